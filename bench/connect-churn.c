// The load of the bench's `connect` scenario, in C: the Node generator saturated its own core
// (90-100%) opening a few thousand connections a second while Mosquitto and FlashMQ used ~45%
// of theirs, so the scenario measured the generator. One thread, epoll, non-blocking sockets,
// nothing beyond libc. Built on first use by bench/connect-churn.ts, driven by it over stdin.
//
//   connect-churn HOST PORT SLOTS PREFIX MAX [SOURCE...]
//
// SLOTS parallel loops, each: socket -> connect -> MQTT 3.1.1 CONNECT (clean session, keep-alive
// 60, client id PREFIX-w<slot>-<n>) -> the 4-byte CONNACK with return code 0 -> DISCONNECT ->
// shutdown(SHUT_WR) -> the broker's close (at most 1 s) -> close. That is what the Node workers
// did (socket.end(DISCONNECT), then wait for 'close'): a normal FIN, never an RST, and the next
// connection starts only once the broker has torn this one down. A refused connection, another
// CONNACK, a close before it, or no CONNACK within 5 s is a failure, and the slot pauses 10 ms
// so a refusing broker does not make it spin. At most MAX connections are started in all.
//
// SOURCE...: loopback addresses to connect from, MAX / count connections each in turn. The
// client closes first, so each of its ports stays in TIME_WAIT for a minute; one address has
// ~28,000 ephemeral ports, fewer than a fast broker gets through in a run.
//
// Every byte read from stdin is answered on stdout with "<connections> <failures> <started>\n",
// cumulative counts, so the generator reads them at the exact start and end of its window (and
// sees when MAX was reached). It exits when stdin closes, and on SIGTERM (the default action).

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SLOTS 256
#define MAX_SOURCES 1024
#define CONNACK_TIMEOUT_NS (5 * 1000000000LL)
#define CLOSE_TIMEOUT_NS (1 * 1000000000LL)
#define PAUSE_NS (10 * 1000000LL)
#define STDIN_KEY UINT64_MAX

enum state { DONE, PAUSED, CONNECTING, WAIT_CONNACK, WAIT_CLOSE };

struct slot {
  int fd;
  enum state st;
  int64_t deadline; // CLOCK_MONOTONIC ns; for PAUSED, when to start the next connection
  int got;          // CONNACK bytes read so far
  unsigned char connack[4];
  unsigned char connect[300];
  size_t connect_len;
};

static struct slot slots[MAX_SLOTS];
static int nslots, ep;
static struct sockaddr_in dst;
static struct sockaddr_in sources[MAX_SOURCES];
static int nsources;
static const char *prefix;
static long long max_conns, per_source, started, connections, failures;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void die(const char *what) {
  perror(what);
  exit(2);
}

// CONNECT: protocol "MQTT" level 4, flags 0x02 (clean session), keep-alive 60, the client id.
static size_t encode_connect(unsigned char *out, size_t cap, const char *id) {
  size_t idlen = strlen(id);
  size_t rem = 10 + 2 + idlen;
  if (idlen > 0xffff || rem > 16383 || rem + 3 > cap) return 0;
  size_t n = 0;
  out[n++] = 0x10;
  if (rem < 128) out[n++] = (unsigned char)rem;
  else {
    out[n++] = (unsigned char)(0x80 | (rem & 0x7f));
    out[n++] = (unsigned char)(rem >> 7);
  }
  static const unsigned char head[] = {0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60};
  memcpy(out + n, head, sizeof head);
  n += sizeof head;
  out[n++] = (unsigned char)(idlen >> 8);
  out[n++] = (unsigned char)(idlen & 0xff);
  memcpy(out + n, id, idlen);
  return n + idlen;
}

static void end_socket(struct slot *s) {
  if (s->fd >= 0) close(s->fd);
  s->fd = -1;
}

static void fail(struct slot *s) {
  end_socket(s);
  failures++;
  s->st = PAUSED;
  s->deadline = now_ns() + PAUSE_NS;
}

static void start(struct slot *s, int index) {
  if (started >= max_conns) {
    s->st = DONE;
    return;
  }
  long long n = started++;
  char id[256];
  snprintf(id, sizeof id, "%s-w%d-%lld", prefix, index, n);
  s->connect_len = encode_connect(s->connect, sizeof s->connect, id);
  s->got = 0;
  s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s->fd < 0 || s->connect_len == 0) { fail(s); return; }
  if (nsources > 0) {
    // The address only: the port is picked by connect(), which may take any port not in use
    // towards this destination (a port picked by bind() must be free towards every one).
    int one = 1;
#ifdef IP_BIND_ADDRESS_NO_PORT
    setsockopt(s->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
    (void)one;
    const struct sockaddr_in *src = &sources[n / per_source < nsources ? n / per_source : nsources - 1];
    if (bind(s->fd, (const struct sockaddr *)src, sizeof *src) < 0) { fail(s); return; }
  }
  if (connect(s->fd, (const struct sockaddr *)&dst, sizeof dst) < 0 && errno != EINPROGRESS) { fail(s); return; }
  // Edge-triggered: one registration serves the connect (EPOLLOUT), the CONNACK and the close (EPOLLIN).
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.u64 = (uint64_t)index};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev) < 0) { fail(s); return; }
  s->st = CONNECTING;
  s->deadline = now_ns() + CONNACK_TIMEOUT_NS;
}

static void finished(struct slot *s, int index) {
  end_socket(s);
  connections++;
  start(s, index);
}

static void on_event(int index, uint32_t events) {
  struct slot *s = &slots[index];
  if (s->st == CONNECTING) {
    if (events & (EPOLLERR | EPOLLHUP)) { fail(s); return; }
    if (!(events & EPOLLOUT)) return;
    // A fresh socket's send buffer takes a CONNECT whole; anything less is a failure.
    if (write(s->fd, s->connect, s->connect_len) != (ssize_t)s->connect_len) { fail(s); return; }
    s->st = WAIT_CONNACK;
  }
  if (s->st == WAIT_CONNACK) {
    while (s->got < 4) {
      ssize_t r = read(s->fd, s->connack + s->got, (size_t)(4 - s->got));
      if (r > 0) s->got += (int)r;
      else if (r < 0 && errno == EAGAIN) return;
      else if (r < 0 && errno == EINTR) continue;
      else { fail(s); return; } // closed before the CONNACK was whole, or reset
    }
    // CONNACK, remaining length 2, return code 0 (the session-present flag is not checked).
    if (s->connack[0] != 0x20 || s->connack[1] != 0x02 || s->connack[3] != 0) { fail(s); return; }
    static const unsigned char disconnect[] = {0xe0, 0x00};
    if (write(s->fd, disconnect, sizeof disconnect) != (ssize_t)sizeof disconnect) { fail(s); return; }
    shutdown(s->fd, SHUT_WR);
    s->st = WAIT_CLOSE;
    s->deadline = now_ns() + CLOSE_TIMEOUT_NS;
  }
  if (s->st == WAIT_CLOSE) {
    // Done once the broker closes (EOF, or a reset); anything it sends meanwhile is ignored.
    unsigned char sink[256];
    for (;;) {
      ssize_t r = read(s->fd, sink, sizeof sink);
      if (r > 0) continue;
      if (r < 0 && errno == EAGAIN) return;
      if (r < 0 && errno == EINTR) continue;
      { finished(s, index); return; }
    }
  }
}

static void answer_stdin(void) {
  char req[64];
  ssize_t r = read(0, req, sizeof req);
  if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) exit(0);
  for (ssize_t i = 0; i < r; i++) {
    char line[96];
    int len = snprintf(line, sizeof line, "%lld %lld %lld\n", connections, failures, started);
    if (write(1, line, (size_t)len) != len) exit(0); // the generator is gone
  }
}

static void parse_addr(const char *text, int port, struct sockaddr_in *out) {
  memset(out, 0, sizeof *out);
  out->sin_family = AF_INET;
  out->sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, text, &out->sin_addr) != 1) {
    fprintf(stderr, "connect-churn: not an IPv4 address: %s\n", text);
    exit(2);
  }
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: connect-churn HOST PORT SLOTS PREFIX MAX [SOURCE...]\n");
    return 2;
  }
  int port = atoi(argv[2]);
  nslots = atoi(argv[3]);
  prefix = argv[4];
  max_conns = atoll(argv[5]);
  nsources = argc - 6;
  if (port <= 0 || port > 65535 || nslots <= 0 || nslots > MAX_SLOTS || max_conns <= 0 || nsources > MAX_SOURCES) {
    fprintf(stderr, "connect-churn: bad arguments (port 1-65535, slots 1-%d, max > 0, at most %d sources)\n", MAX_SLOTS, MAX_SOURCES);
    return 2;
  }
  parse_addr(argv[1], port, &dst);
  for (int i = 0; i < nsources; i++) parse_addr(argv[6 + i], 0, &sources[i]);
  per_source = nsources > 0 ? (max_conns + nsources - 1) / nsources : max_conns;

  // A broker that resets a connection must not kill us on the next write: write() reports it.
  signal(SIGPIPE, SIG_IGN);
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  struct epoll_event in = {.events = EPOLLIN, .data.u64 = STDIN_KEY};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &in) < 0) die("epoll_ctl(stdin)");
  for (int i = 0; i < nslots; i++) {
    slots[i].fd = -1;
    start(&slots[i], i);
  }

  struct epoll_event evs[MAX_SLOTS + 1];
  for (;;) {
    // Sleep until the next event or the earliest deadline (a pause ending, a timeout).
    int64_t t = now_ns(), next = -1;
    for (int i = 0; i < nslots; i++)
      if (slots[i].st != DONE && (next < 0 || slots[i].deadline < next)) next = slots[i].deadline;
    int timeout = next < 0 ? -1 : next <= t ? 0 : (int)((next - t + 999999) / 1000000);
    int n = epoll_wait(ep, evs, MAX_SLOTS + 1, timeout);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < n; i++) {
      if (evs[i].data.u64 == STDIN_KEY) answer_stdin();
      else on_event((int)evs[i].data.u64, evs[i].events);
    }
    t = now_ns();
    for (int i = 0; i < nslots; i++) {
      struct slot *s = &slots[i];
      if (s->st == DONE || s->deadline > t) continue;
      if (s->st == PAUSED) start(s, i);
      else if (s->st == WAIT_CLOSE) finished(s, i); // counted, as the Node workers did after 1 s
      else fail(s);
    }
  }
}
