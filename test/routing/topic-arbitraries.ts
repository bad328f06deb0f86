/**
 * fast-check arbitraries for the routing tests that compare an index against `topicMatches`: small
 * topic names and filters over a few levels ('', '$SYS', 'a', 'b', 'c'), so that they often match.
 * Both sides of the comparison need valid input, and '' is neither a topic nor a filter.
 */
import fc from 'fast-check'

const level = fc.constantFrom('', '$SYS', 'a', 'b', 'c')

/** A topic name of one to five levels. */
export const topicArb: fc.Arbitrary<string> = fc
  .array(level, { minLength: 1, maxLength: 5 })
  .map((ls) => ls.join('/'))
  .filter((t) => t !== '')

/** A topic filter of up to five levels, some of them '+', perhaps ending in '#'. */
export const filterArb: fc.Arbitrary<string> = fc
  .tuple(fc.array(fc.oneof(level, fc.constant('+')), { maxLength: 5 }), fc.boolean())
  .map(([ls, hash]) => (hash ? [...ls, '#'] : ls).join('/'))
  .filter((f) => f !== '')
