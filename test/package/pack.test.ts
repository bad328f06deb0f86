// The package as npm users get it: `npm pack` (which runs the build through `prepack`), the tarball
// installed into a fresh app, then type-checked against, run, required from CommonJS, and its
// contents checked. Dependencies come from the npm cache (or the registry).
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { builtinModules, createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join, posix } from 'node:path'
import { after, before, test } from 'node:test'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../..', import.meta.url))
const fixtures = fileURLToPath(new URL('./app/', import.meta.url))
const requireHere = createRequire(import.meta.url)
// This checkout's TypeScript and @types/node, by path: the fresh app installs only the tarball.
const tsc = requireHere.resolve('typescript/bin/tsc')
const typeRoots = join(root, 'node_modules', '@types')

interface Result {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs a command to its exit (killed after `timeoutMs`), without the npm_* variables of an enclosing `npm test`. */
function run(command: string, args: string[], cwd: string, timeoutMs = 60_000): Promise<Result> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)))
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${command} ${args.join(' ')} did not finish in ${timeoutMs} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`))
    }, timeoutMs)
    child.once('error', reject)
    child.once('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

function ok(result: Result, what: string): Result {
  assert.equal(result.code, 0, `${what} failed (exit ${result.code})\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`)
  return result
}

interface PackedPackage {
  name: string
  main?: string
  types?: string
  bin?: string | Record<string, string>
  exports?: unknown
  scripts?: Record<string, string>
  dependencies?: Record<string, string>
  peerDependencies?: Record<string, string>
  files?: string[]
}

let work = ''
let app = ''
let installed = ''
let tarball = ''
let shipped = new Set<string>()
let packed: PackedPackage
let typecheck: Result
const timings: string[] = []

async function timed<T>(label: string, step: () => Promise<T>): Promise<T> {
  const start = performance.now()
  const value = await step()
  timings.push(`${label} ${((performance.now() - start) / 1000).toFixed(1)} s`)
  return value
}

/** The ```ts blocks of a markdown text. */
function tsBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1] ?? '')
}

before(
  async () => {
    work = mkdtempSync(join(tmpdir(), 'culex-pack-'))
    const pack = ok(await timed('npm pack', () => run('npm', ['pack', '--json', '--pack-destination', work], root, 120_000)), 'npm pack')
    // Lifecycle scripts print to stderr under --json; stdout holds the JSON report.
    const report = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('['))) as Array<{ filename: string; files: Array<{ path: string }> }>
    const [entry] = report
    assert.ok(entry, 'npm pack reported no tarball')
    tarball = join(work, entry.filename)
    shipped = new Set(entry.files.map((f) => f.path))

    app = join(work, 'app')
    mkdirSync(app)
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'culex-pack-app', version: '1.0.0', private: true, type: 'module' }))
    ok(await timed('npm install', () => run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball], app, 120_000)), 'npm install <tarball>')
    installed = join(app, 'node_modules', 'culex-mqtt')
    packed = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as PackedPackage

    copyFileSync(join(fixtures, 'host.ts'), join(app, 'host.ts'))
    copyFileSync(join(fixtures, 'cjs-host.cts'), join(app, 'cjs-host.cts'))
    // The README's TypeScript snippets, as shipped, must compile against the package too (they are not run).
    const snippets = tsBlocks(readFileSync(join(installed, 'README.md'), 'utf8'))
    snippets.forEach((code, i) => writeFileSync(join(app, `readme-${i + 1}.ts`), code))
    typecheck = await timed('tsc', () =>
      run(
        process.execPath,
        [
          tsc,
          '--strict',
          '--exactOptionalPropertyTypes',
          '--skipLibCheck',
          'false',
          '--module',
          'nodenext',
          '--moduleResolution',
          'nodenext',
          '--target',
          'es2022',
          '--types',
          'node',
          '--typeRoots',
          typeRoots,
          '--outDir',
          'out',
          '--pretty',
          'false',
          'host.ts',
          'cjs-host.cts',
          ...snippets.map((_, i) => `readme-${i + 1}.ts`),
        ],
        app,
      ),
    )
  },
  { timeout: 240_000 },
)

after(() => {
  if (timings.length > 0) console.log(`pack test steps: ${timings.join(', ')}`)
  if (work !== '') rmSync(work, { recursive: true, force: true })
})

test('a TypeScript app type-checks against the installed package (--strict --exactOptionalPropertyTypes --skipLibCheck false), README snippets included', () => {
  assert.ok(readdirSync(app).filter((f) => f.startsWith('readme-')).length >= 2, 'the README has its TypeScript snippets')
  assert.equal(typecheck.code, 0, `tsc reported errors:\n${typecheck.stdout}${typecheck.stderr}`)
})

test('the compiled app runs a broker from the installed package: hooks, events, tcp and WebSocket, publish/subscribe', async () => {
  const host = await timed('host run', () => run(process.execPath, ['out/host.js'], app, 30_000))
  assert.equal(host.code, 0, `host.js failed\nstdout:\n${host.stdout}\nstderr:\n${host.stderr}`)
  assert.match(host.stdout, /^host ok: tcp \d+, ws \d+, 2 clients, 2 messages$/m)
})

test('a CommonJS app loads the package with require() (Node 20.19+), the same module instance as import()', async () => {
  assert.equal(readFileSync(join(app, 'out', 'cjs-host.cjs'), 'utf8').match(/require\("culex-mqtt"\)/)?.[0], 'require("culex-mqtt")')
  const cjs = await run(process.execPath, ['out/cjs-host.cjs'], app, 30_000)
  assert.equal(cjs.code, 0, `cjs-host.cjs failed\nstdout:\n${cjs.stdout}\nstderr:\n${cjs.stderr}`)
  assert.match(cjs.stdout, /^cjs ok: function Broker, cjs connected over tcp on port \d+$/m)
})

test('culex-mqtt/fastify loads without Fastify, an optional peer the app did not install', async () => {
  assert.ok(packed.peerDependencies?.fastify !== undefined, 'fastify is a peer dependency')
  const script = "const { culexDashboard } = await import('culex-mqtt/fastify'); console.log(typeof culexDashboard)"
  const r = ok(await run(process.execPath, ['--input-type=module', '-e', script], app, 30_000), 'import culex-mqtt/fastify')
  assert.equal(r.stdout.trim(), 'function')
  assert.throws(() => createRequire(join(app, 'package.json')).resolve('fastify'), /Cannot find module/, 'the app has no fastify')
})

test('the installed culex bin prints its usage for --help and -h and exits 0', async () => {
  const bin = join(app, 'node_modules', '.bin', 'culex')
  for (const flag of ['--help', '-h']) {
    const r = await run(bin, [flag], app, 30_000)
    assert.equal(r.code, 0, `culex ${flag}: ${r.stderr}`)
    assert.match(r.stdout, /^Usage: culex \[options\]/)
    assert.match(r.stdout, /--port/)
  }
})

test('package.json entry points (main, types, exports, bin) are files in the tarball', () => {
  const targets: string[] = []
  const collect = (value: unknown): void => {
    if (typeof value === 'string') targets.push(value)
    else if (value !== null && typeof value === 'object') Object.values(value).forEach(collect)
  }
  collect([packed.main, packed.types, packed.bin, packed.exports])
  assert.ok(targets.length >= 5)
  for (const target of targets) assert.ok(shipped.has(posix.normalize(target)), `${target} is not in the tarball`)
  const bins = typeof packed.bin === 'string' ? [packed.bin] : Object.values(packed.bin ?? {})
  for (const bin of bins) assert.match(readFileSync(join(installed, bin), 'utf8'), /^#!\/usr\/bin\/env node\n/)
})

test('no source map, or sourceMappingURL, points at a file the tarball does not ship', () => {
  for (const file of shipped) {
    const dir = posix.dirname(file)
    if (/\.(js|d\.ts)$/.test(file)) {
      const url = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(readFileSync(join(installed, file), 'utf8'))?.[1]
      if (url !== undefined && !url.startsWith('data:')) assert.ok(shipped.has(posix.join(dir, url)), `${file} refers to the missing ${url}`)
    }
    if (file.endsWith('.map')) {
      const map = JSON.parse(readFileSync(join(installed, file), 'utf8')) as { sources: string[]; sourceRoot?: string; sourcesContent?: unknown[] }
      for (const source of map.sources) {
        assert.ok(shipped.has(posix.join(dir, map.sourceRoot ?? '', source)), `${file} refers to ${source}, which is not in the tarball`)
      }
    }
  }
})

test('every relative link in the shipped README and docs resolves to a file in the tarball', () => {
  const markdown = [...shipped].filter((f) => f.endsWith('.md'))
  assert.ok(markdown.includes('README.md') && markdown.some((f) => f.startsWith('docs/')), 'README.md and docs/ are shipped')
  let checked = 0
  for (const file of markdown) {
    const text = readFileSync(join(installed, file), 'utf8')
    const targets = [...text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g), ...text.matchAll(/^\s*\[[^\]]+\]:\s*(\S+)/gm)].map((m) => m[1] ?? '')
    for (const target of targets) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('#')) continue
      const path = posix.normalize(posix.join(posix.dirname(file), decodeURIComponent(target.replace(/[#?].*$/, ''))))
      // A directory is no page on npm: links name files.
      assert.ok(shipped.has(path), `${file} links to ${target} (${path}), which is not a file in the tarball`)
      checked++
    }
  }
  assert.ok(checked > 0, 'found no relative link to check')
})

test('the packed package.json runs no script in a user install, and its dependencies are exactly what dist/ imports', () => {
  const scripts = packed.scripts ?? {}
  for (const hook of ['preinstall', 'install', 'postinstall', 'prepare']) {
    // prepare runs for git and tarball installs (npm 11 lists it among install scripts).
    assert.equal(scripts[hook], undefined, `the packed package.json has a ${hook} script: ${scripts[hook]}`)
  }
  assert.ok(![...shipped].some((f) => posix.basename(f) === 'binding.gyp'), 'a binding.gyp would make npm run node-gyp on install')

  const peers = new Set(Object.keys(packed.peerDependencies ?? {}))
  const declared = new Set([...Object.keys(packed.dependencies ?? {}), ...peers])
  const builtins = new Set(builtinModules)
  const used = new Set<string>()
  for (const file of shipped) {
    if (!/\.(js|d\.ts)$/.test(file)) continue
    // Comments are not imports: block comments, and line comments that fill their line.
    const text = readFileSync(join(installed, file), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '')
    for (const m of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\brequire(?:\.resolve)?\s*\(\s*|^\s*import\s+)['"]([^'"]+)['"]/gm)) {
      const specifier = m[1] ?? ''
      if (specifier.startsWith('.') || specifier.startsWith('node:') || builtins.has(specifier)) continue
      const name = specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : (specifier.split('/')[0] ?? '')
      assert.ok(declared.has(name), `${file} imports ${specifier}, which is not a dependency`)
      // A peer that only declarations import is used too: culex-mqtt/fastify needs Fastify's types, not Fastify.
      if (file.endsWith('.js') || peers.has(name)) used.add(name)
    }
  }
  assert.deepEqual([...declared].filter((name) => !used.has(name)), [], 'dependencies that no shipped file imports')
})

test('the README lists every example in examples/, and the install and project commands come first', () => {
  const readme = readFileSync(join(installed, 'README.md'), 'utf8')
  const examples = readdirSync(join(root, 'examples')).filter((f) => f.endsWith('.ts'))
  assert.ok(examples.length > 0)
  for (const example of examples) assert.match(readme, new RegExp(`\\]\\(examples/${example.replace('.', '\\.')}\\)`), `README does not link examples/${example}`)
  const top = readme.split('\n').slice(0, 40).join('\n')
  assert.match(top, /^## Install$/m)
  assert.match(top, /^npm install culex-mqtt$/m)
  assert.match(top, /from 'culex-mqtt'/)
  assert.match(top, /^npm install && npm start\b/m)
  assert.match(top, /^npm test\b/m)
})
