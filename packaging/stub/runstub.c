/*
 * runstub: the front of hostagent's single file. Linked statically (no loader, no libc needed on the
 * host). Behind it in the same file: a zlib-compressed bundle (PyInstaller onedir, with the glibc and
 * loader it was built against) and a trailer naming the bundle's SHA-256.
 *
 * At start:
 *   0. As root, tidy CACHE: remove partial copies whose unpacker is gone (.partial-*, flock-free; an
 *      older stub's .unpack-* after 10 minutes) and other versions' copies that no process runs from.
 *   1. CACHE/<sha256> exists and every path component and every file under it is root-owned and not
 *      writable by group or others (no symlink components, no foreign owner): exec the bundle's
 *      program from there. A cached start costs some lstat calls, no unpacking.
 *   2. Else, as root: unpack into a fresh 0700 CACHE/.partial-XXXXXX (flock'ed while in progress),
 *      check the SHA-256 of the compressed bundle as it is read, point the program's PT_INTERP and
 *      DT_RPATH at the bundled loader and libraries, rename into place (atomic; a concurrent
 *      unpacker's result is used instead), then 1.
 *   Not root: root's copy if it passes 1; else 1-2 with the user's own cache ($XDG_CACHE_HOME/hostagent
 *      or ~/.cache/hostagent, every component root's or the user's, not writable by others unless
 *      sticky; all of it the user's) and a marker that also records the tree's state: a copy changed
 *      since its unpack is made again.
 *   3. Else (no usable cache, or CACHE not writable or not trusted): unpack into a private dir under
 *      $TMPDIR (or /tmp), run the program as a child and remove the dir when it exits. For `exec` that
 *      starts the agent (no root parent may stay behind it) the program is exec'd directly and named
 *      its dir in HOSTAGENT_UNPACKED: it removes the dir just before it execs the agent. Root does this only where
 *      every component of $TMPDIR is root-owned and not writable by others unless sticky, creating,
 *      filling and exec'ing the dir through held fds; else it refuses (exit 2).
 * Root never runs code from a dir someone else can write: 1 checks the whole tree at every start.
 * Signals that end the process are held while a dir is half unpacked: the dir goes, then the signal
 * acts. The program learns the single file's path from HOSTAGENT_EXECUTABLE (its runtime hook takes it
 * out of the environment and makes it sys.executable).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <ctype.h>
#include <time.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#ifndef CACHE_ROOT
#define CACHE_ROOT "/var/cache/hostagent"
#endif
#define PROGRAM "hostagent"
#define LOADER "_internal/ld-linux-x86-64.so.2"
#define MARKER ".complete"
#define RPATH_PLACEHOLDER "/hostagent-runstub-rpath"
#define MAGIC "HOSTAGENT-RUN-1\n"
#define TRAILER_SIZE (16 + 8 + 8 + 64)

struct trailer {
    uint64_t offset, size;
    char sha[65];
};

static const char *self_name = "hostagent";
/* The cache in use: root's, or (not root) the user's own under $XDG_CACHE_HOME or ~/.cache. Everything
 * in it must belong to `owner`. */
static char cache_root[PATH_MAX] = CACHE_ROOT;
static uid_t owner = 0;
/* The dir being unpacked (name in the dir `parent`), removed if we die or are signalled. */
static struct { int parent, fd; char name[32]; } partial = {-1, -1, ""};
static void drop_partial(void);

static void die(const char *what, int err) {
    drop_partial();
    if (err)
        fprintf(stderr, "%s: single file: %s: %s\n", self_name, what, strerror(err));
    else
        fprintf(stderr, "%s: single file: %s\n", self_name, what);
    exit(2);
}

/* ---- SHA-256 (FIPS 180-4) ------------------------------------------------------------------- */
typedef struct { uint32_t h[8]; uint64_t len; uint8_t buf[64]; size_t n; } sha256_ctx;
static const uint32_t K[64] = {
    0x428a2f98,0x71374491,0xb5c0fbcf,0xe9b5dba5,0x3956c25b,0x59f111f1,0x923f82a4,0xab1c5ed5,
    0xd807aa98,0x12835b01,0x243185be,0x550c7dc3,0x72be5d74,0x80deb1fe,0x9bdc06a7,0xc19bf174,
    0xe49b69c1,0xefbe4786,0x0fc19dc6,0x240ca1cc,0x2de92c6f,0x4a7484aa,0x5cb0a9dc,0x76f988da,
    0x983e5152,0xa831c66d,0xb00327c8,0xbf597fc7,0xc6e00bf3,0xd5a79147,0x06ca6351,0x14292967,
    0x27b70a85,0x2e1b2138,0x4d2c6dfc,0x53380d13,0x650a7354,0x766a0abb,0x81c2c92e,0x92722c85,
    0xa2bfe8a1,0xa81a664b,0xc24b8b70,0xc76c51a3,0xd192e819,0xd6990624,0xf40e3585,0x106aa070,
    0x19a4c116,0x1e376c08,0x2748774c,0x34b0bcb5,0x391c0cb3,0x4ed8aa4a,0x5b9cca4f,0x682e6ff3,
    0x748f82ee,0x78a5636f,0x84c87814,0x8cc70208,0x90befffa,0xa4506ceb,0xbef9a3f7,0xc67178f2};
#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
static void sha256_block(sha256_ctx *c, const uint8_t *p) {
    uint32_t w[64], a, b, d, e, f, g, h, cc, t1, t2;
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = c->h[0]; b = c->h[1]; cc = c->h[2]; d = c->h[3]; e = c->h[4]; f = c->h[5]; g = c->h[6]; h = c->h[7];
    for (int i = 0; i < 64; i++) {
        t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & cc) ^ (b & cc));
        h = g; g = f; f = e; e = d + t1; d = cc; cc = b; b = a; a = t1 + t2;
    }
    c->h[0] += a; c->h[1] += b; c->h[2] += cc; c->h[3] += d; c->h[4] += e; c->h[5] += f; c->h[6] += g; c->h[7] += h;
}
static void sha256_init(sha256_ctx *c) {
    static const uint32_t iv[8] = {0x6a09e667,0xbb67ae85,0x3c6ef372,0xa54ff53a,0x510e527f,0x9b05688c,0x1f83d9ab,0x5be0cd19};
    memcpy(c->h, iv, sizeof iv); c->len = 0; c->n = 0;
}
static void sha256_update(sha256_ctx *c, const uint8_t *p, size_t n) {
    c->len += n;
    while (n) {
        size_t k = 64 - c->n < n ? 64 - c->n : n;
        memcpy(c->buf + c->n, p, k); c->n += k; p += k; n -= k;
        if (c->n == 64) { sha256_block(c, c->buf); c->n = 0; }
    }
}
static void sha256_hex(sha256_ctx *c, char out[65]) {
    uint64_t bits = c->len * 8;
    uint8_t pad = 0x80, zero = 0, lenb[8];
    sha256_update(c, &pad, 1);
    while (c->n != 56) sha256_update(c, &zero, 1);
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_update(c, lenb, 8);
    for (int i = 0; i < 8; i++) sprintf(out + 8 * i, "%08x", c->h[i]);
}

/* ---- reading the bundle ---------------------------------------------------------------------- */
static uint64_t le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static int read_trailer(int fd, struct trailer *t) {
    unsigned char buf[TRAILER_SIZE];
    off_t end = lseek(fd, 0, SEEK_END);
    if (end < TRAILER_SIZE || pread(fd, buf, TRAILER_SIZE, end - TRAILER_SIZE) != TRAILER_SIZE) return -1;
    if (memcmp(buf, MAGIC, 16) != 0) return -1;
    t->offset = le64(buf + 16);
    t->size = le64(buf + 24);
    memcpy(t->sha, buf + 32, 64);
    t->sha[64] = 0;
    for (int i = 0; i < 64; i++)
        if (!strchr("0123456789abcdef", t->sha[i])) return -1;
    if (t->offset + t->size + TRAILER_SIZE != (uint64_t)end) return -1;
    return 0;
}

/* A stream of entries, inflated as it is read: type(1) mode(2) pathlen(2) path, then for 'f' a size(8)
 * and the bytes, for 'l' a target length(2) and the target; 'E' ends the stream. */
struct stream {
    int fd;
    uint64_t left;
    z_stream z;
    sha256_ctx sha;
    unsigned char in[1 << 16];
};

static void check_signals(void);

static void s_read(struct stream *s, void *dst, size_t n) {
    s->z.next_out = dst;
    s->z.avail_out = (uInt)n;
    while (s->z.avail_out) {
        if (s->z.avail_in == 0) {
            check_signals();
            size_t want = s->left < sizeof s->in ? (size_t)s->left : sizeof s->in;
            ssize_t got = want ? read(s->fd, s->in, want) : 0;
            if (got <= 0) die("bundle truncated", got < 0 ? errno : 0);
            sha256_update(&s->sha, s->in, (size_t)got);
            s->left -= (uint64_t)got;
            s->z.next_in = s->in;
            s->z.avail_in = (uInt)got;
        }
        int rc = inflate(&s->z, Z_NO_FLUSH);
        if (rc == Z_STREAM_END && s->z.avail_out) die("bundle truncated", 0);
        if (rc != Z_OK && rc != Z_STREAM_END) die("bundle corrupt", 0);
    }
}

static int safe_relpath(const char *p) {
    if (!*p || *p == '/') return 0;
    for (const char *c = p; *c;) {
        const char *slash = strchr(c, '/');
        size_t n = slash ? (size_t)(slash - c) : strlen(c);
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.')) return 0;
        c += n + (slash ? 1 : 0);
    }
    return 1;
}

/* Unpack the bundle of `self` into the empty dir `dirfd`; check its SHA-256 against the trailer. */
static void unpack(int self, const struct trailer *t, int dirfd) {
    static struct stream s;
    static unsigned char buf[1 << 16];
    memset(&s.z, 0, sizeof s.z);
    if (inflateInit(&s.z) != Z_OK) die("zlib", 0);
    sha256_init(&s.sha);
    s.fd = self;
    s.left = t->size;
    if (lseek(self, (off_t)t->offset, SEEK_SET) < 0) die("seek", errno);
    for (;;) {
        unsigned char h[5];
        char path[PATH_MAX], target[PATH_MAX];
        check_signals();
        s_read(&s, h, 1);
        if (h[0] == 'E') break;
        s_read(&s, h + 1, 4);
        unsigned mode = (h[1] | h[2] << 8) & 0755;
        unsigned plen = h[3] | h[4] << 8;
        if (plen >= sizeof path) die("bundle path too long", 0);
        s_read(&s, path, plen);
        path[plen] = 0;
        if (!safe_relpath(path)) die("bundle path unsafe", 0);
        if (h[0] == 'd') {
            if (mkdirat(dirfd, path, 0700) != 0) die(path, errno);
            if (fchmodat(dirfd, path, mode, 0) != 0) die(path, errno);
        } else if (h[0] == 'l') {
            unsigned char l[2];
            s_read(&s, l, 2);
            unsigned tlen = l[0] | l[1] << 8;
            if (tlen >= sizeof target) die("bundle link too long", 0);
            s_read(&s, target, tlen);
            target[tlen] = 0;
            if (symlinkat(target, dirfd, path) != 0) die(path, errno);
        } else if (h[0] == 'f') {
            unsigned char l[8];
            s_read(&s, l, 8);
            uint64_t size = le64(l);
            int fd = openat(dirfd, path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
            if (fd < 0) die(path, errno);
            while (size) {
                size_t n = size < sizeof buf ? (size_t)size : sizeof buf;
                s_read(&s, buf, n);
                if (write(fd, buf, n) != (ssize_t)n) die(path, errno);
                size -= n;
            }
            if (fchmod(fd, mode) != 0 || close(fd) != 0) die(path, errno);
        } else {
            die("bundle entry unknown", 0);
        }
    }
    /* The whole compressed stream must have been read and must hash to the trailer's value. */
    while (s.left) {
        ssize_t got = read(self, s.in, s.left < sizeof s.in ? (size_t)s.left : sizeof s.in);
        if (got <= 0) die("bundle truncated", got < 0 ? errno : 0);
        sha256_update(&s.sha, s.in, (size_t)got);
        s.left -= (uint64_t)got;
    }
    inflateEnd(&s.z);
    char sha[65];
    sha256_hex(&s.sha, sha);
    if (strcmp(sha, t->sha) != 0) die("bundle SHA-256 mismatch: the file is damaged", 0);
}

/* Map a virtual address of the program to its file offset through its PT_LOAD segments. */
static off_t vaddr_to_offset(const Elf64_Phdr *ph, int n, uint64_t vaddr) {
    for (int i = 0; i < n; i++)
        if (ph[i].p_type == PT_LOAD && vaddr >= ph[i].p_vaddr && vaddr < ph[i].p_vaddr + ph[i].p_filesz)
            return (off_t)(ph[i].p_offset + (vaddr - ph[i].p_vaddr));
    return -1;
}

static void overwrite_string(int fd, off_t at, size_t room, const char *value, const char *what) {
    size_t n = strlen(value);
    if (n + 1 > room) die(what, ENAMETOOLONG);
    char *field = calloc(1, room);
    memcpy(field, value, n);
    if (pwrite(fd, field, room, at) != (ssize_t)room) die(what, errno);
    free(field);
}

/* The build left long placeholders in the program's PT_INTERP and DT_RPATH: point them at the
 * bundled loader and the bundled libraries by absolute path ($ORIGIN needs /proc, a bare chroot
 * has none). */
static void patch_program(int dirfd, const char *dir) {
    char value[PATH_MAX];
    int fd = openat(dirfd, PROGRAM, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    Elf64_Ehdr eh;
    if (fd < 0 || pread(fd, &eh, sizeof eh, 0) != sizeof eh || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
        eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum > 64)
        die("bundle program unreadable", errno);
    Elf64_Phdr ph[64];
    size_t phsize = sizeof(Elf64_Phdr) * eh.e_phnum;
    if (pread(fd, ph, phsize, (off_t)eh.e_phoff) != (ssize_t)phsize) die("bundle program unreadable", errno);
    int interp = 0, rpath = 0;
    for (int i = 0; i < eh.e_phnum; i++) {
        if (ph[i].p_type == PT_INTERP) {
            snprintf(value, sizeof value, "%s/" LOADER, dir);
            overwrite_string(fd, (off_t)ph[i].p_offset, ph[i].p_filesz, value, "loader path");
            interp = 1;
        } else if (ph[i].p_type == PT_DYNAMIC) {
            Elf64_Dyn dyn[256];
            size_t n = ph[i].p_filesz / sizeof(Elf64_Dyn);
            if (n > 256 || pread(fd, dyn, n * sizeof(Elf64_Dyn), (off_t)ph[i].p_offset) != (ssize_t)(n * sizeof(Elf64_Dyn)))
                die("bundle program dynamic section", errno);
            uint64_t strtab = 0, rp = (uint64_t)-1;
            for (size_t k = 0; k < n && dyn[k].d_tag != DT_NULL; k++) {
                if (dyn[k].d_tag == DT_STRTAB) strtab = dyn[k].d_un.d_ptr;
                if (dyn[k].d_tag == DT_RPATH) rp = dyn[k].d_un.d_val;
            }
            off_t at = strtab && rp != (uint64_t)-1 ? vaddr_to_offset(ph, eh.e_phnum, strtab) : -1;
            char old[1024];
            if (at < 0 || pread(fd, old, sizeof old - 1, at + (off_t)rp) <= 0) die("bundle program has no DT_RPATH", 0);
            old[sizeof old - 1] = 0;
            if (strncmp(old, RPATH_PLACEHOLDER, strlen(RPATH_PLACEHOLDER)) != 0)
                die("bundle program's DT_RPATH is not the placeholder", 0);
            snprintf(value, sizeof value, "%s/_internal", dir);
            overwrite_string(fd, at + (off_t)rp, strlen(old) + 1, value, "library path");
            rpath = 1;
        }
    }
    if (!interp || !rpath || close(fd) != 0) die("bundle program not patchable", errno);
}

/* ---- signals -------------------------------------------------------------------------------- */
/* The signals that end a process are held while a dir is half unpacked, and looked at between
 * entries: the dir goes first, then the signal acts. */
static sigset_t held;

static void hold_signals(void) {
    static const int sigs[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGPIPE, SIGALRM, SIGUSR1, SIGUSR2,
                               SIGXCPU, SIGXFSZ, SIGVTALRM, SIGPROF, SIGPWR};
    sigemptyset(&held);
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) sigaddset(&held, sigs[i]);
    sigprocmask(SIG_BLOCK, &held, NULL);
}

static void release_signals(void) {
    sigprocmask(SIG_UNBLOCK, &held, NULL);
}

static void die_of(int sig) {
    drop_partial();
    signal(sig, SIG_DFL);
    release_signals();
    raise(sig);
    _exit(128 + sig);
}

static void check_signals(void) {
    sigset_t pending;
    if (partial.fd < 0 || sigpending(&pending) != 0) return;
    for (int sig = 1; sig < 32; sig++)
        if (sigismember(&held, sig) == 1 && sigismember(&pending, sig) == 1) die_of(sig);
}

/* ---- dirs ------------------------------------------------------------------------------------ */
static void remove_tree(int dirfd) {
    DIR *d = fdopendir(dirfd);
    struct dirent *e;
    if (!d) return;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (unlinkat(dirfd, e->d_name, 0) == 0) continue;
        int sub = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub >= 0) remove_tree(sub);
        unlinkat(dirfd, e->d_name, AT_REMOVEDIR);
    }
    closedir(d);
}

/* Remove the dir `name` in `parent`, whose fd is `fd` (kept open: its flock stays held until the end). */
static void remove_dir_at(int parent, const char *name, int fd) {
    int d = dup(fd);
    if (d >= 0) remove_tree(d);
    unlinkat(parent, name, AT_REMOVEDIR);
}

static void drop_partial(void) {
    if (partial.fd < 0) return;
    int fd = partial.fd;
    partial.fd = -1;
    remove_dir_at(partial.parent, partial.name, fd);
    close(fd);
}

static void random_name(const char *prefix, char name[32]) {
    static const char chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    static unsigned counter;
    unsigned char r[6];
    struct timespec ts;
    /* Unpredictable only against squatting (every create is exclusive): no blocking for entropy at boot. */
    if (getrandom(r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t v = (uint64_t)ts.tv_nsec * 2654435761u ^ (uint64_t)getpid() << 20 ^ counter++;
        for (int i = 0; i < 6; i++) r[i] = (unsigned char)(v >> (8 * i));
    }
    int n = snprintf(name, 32, "%s", prefix);
    for (int i = 0; i < 6; i++) name[n + i] = chars[r[i] % 62];
    name[n + 6] = 0;
}

/* A fresh 0700 dir PREFIXxxxxxx made in `parent` (exclusive, not following anything), flock'ed, and
 * registered as the partial dir. Returns its fd. */
static int fresh_dir(int parent, const char *prefix) {
    for (int tries = 0; tries < 100; tries++) {
        struct stat st, now;
        random_name(prefix, partial.name);
        if (mkdirat(parent, partial.name, 0700) != 0) {
            if (errno == EEXIST) continue;
            return -1;
        }
        int fd = openat(parent, partial.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) return -1;
        /* A tidying run may have taken it for an abandoned one before this lock: then it is gone. */
        if (flock(fd, LOCK_EX) != 0 || fstat(fd, &st) != 0 ||
            fstatat(parent, partial.name, &now, AT_SYMLINK_NOFOLLOW) != 0 || now.st_ino != st.st_ino ||
            now.st_dev != st.st_dev) {
            close(fd);
            continue;
        }
        if (st.st_uid != geteuid() || fchmod(fd, 0700) != 0) {
            close(fd);
            errno = EPERM;
            return -1;
        }
        partial.parent = parent;
        partial.fd = fd;
        return fd;
    }
    errno = EEXIST;
    return -1;
}

/* ---- trust ----------------------------------------------------------------------------------- */
static int trusted_stat(const struct stat *st) {
    return st->st_uid == owner && (S_ISLNK(st->st_mode) || !(st->st_mode & (S_IWGRP | S_IWOTH)));
}

/* Where a dir is on a cache's chain: "/" itself, one between, or the last (the cache or copy dir). */
enum link { SLASH, BETWEEN, LAST };

/* Root's chain: every dir, "/" included, is root's and not group/other writable, sticky or not. */
static int root_link(const struct stat *st, enum link at) {
    (void)at;
    return S_ISDIR(st->st_mode) && trusted_stat(st);
}

/* The user's chain: "/" is root's and not group/other writable; a dir between is root's or the user's
 * and not writable by others unless sticky (in /tmp only its owner can rename or remove the user's
 * dir); the last is the user's and writable by nobody else. */
static int user_link(const struct stat *st, enum link at) {
    int others_write = (st->st_mode & (S_IWGRP | S_IWOTH)) != 0;
    if (!S_ISDIR(st->st_mode)) return 0;
    if (at == SLASH) return st->st_uid == 0 && !others_write;
    if (at == LAST) return st->st_uid == owner && !others_write;
    return (st->st_uid == 0 || st->st_uid == owner) && (!others_write || (st->st_mode & S_ISVTX));
}

/* "/" and then every component of the absolute `path`, lstat'ed (a symlink is not a dir: none is
 * followed), passes `ok` at its place. With `create`, a missing component is made (0700) once all
 * above it passed: nothing is made through a symlink or in a dir that fails. */
static int walk_chain(const char *path, int (*ok)(const struct stat *, enum link), int create) {
    char buf[PATH_MAX];
    struct stat st;
    if (strlen(path) >= sizeof buf || path[0] != '/') return 0;
    strcpy(buf, path);
    if (lstat("/", &st) != 0 || !ok(&st, SLASH)) return 0;
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char saved = *p;
            *p = 0;
            if (lstat(buf, &st) != 0 && !(create && errno == ENOENT && mkdir(buf, 0700) == 0 && lstat(buf, &st) == 0))
                return 0;
            if (!ok(&st, saved ? BETWEEN : LAST)) return 0;
            *p = saved;
            if (!saved) break;
        }
    }
    return 1;
}

/* Root's cache, and a copy in it. */
static int trusted_chain(const char *path) {
    return walk_chain(path, root_link, 0);
}

/* The user's cache (made where missing with `create`), and a copy in it. */
static int user_chain(const char *path, int create) {
    return walk_chain(path, user_link, create);
}

/* The user's cache records the state of its tree in its marker: a digest of every entry's name, type,
 * mode, owner, size, inode, mtime and ctime (no one can set a ctime back), so a file changed, replaced,
 * added or removed since the unpack shows. Entry digests are sorted: readdir order does not matter. */
struct state { uint8_t (*entry)[32]; size_t n, cap; };

static void state_add(struct state *s, const char *rel, const struct stat *st) {
    sha256_ctx c;
    char hex[65];
    uint64_t f[8] = {st->st_mode, st->st_uid, (uint64_t)st->st_size, st->st_ino, (uint64_t)st->st_mtim.tv_sec,
                     (uint64_t)st->st_mtim.tv_nsec, (uint64_t)st->st_ctim.tv_sec, (uint64_t)st->st_ctim.tv_nsec};
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        if (!(s->entry = realloc(s->entry, s->cap * sizeof *s->entry))) die("out of memory", 0);
    }
    sha256_init(&c);
    sha256_update(&c, (const uint8_t *)rel, strlen(rel) + 1);
    sha256_update(&c, (const uint8_t *)f, sizeof f);
    sha256_hex(&c, hex);
    for (int i = 0; i < 32; i++) sscanf(hex + 2 * i, "%2hhx", &s->entry[s->n][i]);
    s->n++;
}

static int by_bytes(const void *a, const void *b) { return memcmp(a, b, 32); }

static void state_hex(struct state *s, char out[65]) {
    sha256_ctx c;
    qsort(s->entry, s->n, 32, by_bytes);
    sha256_init(&c);
    sha256_update(&c, (const uint8_t *)s->entry, s->n * 32);
    sha256_hex(&c, out);
}

/* Everything below the dir fd belongs to `owner` and is not group/other writable (symlinks: only
 * owned). With `state`, also records every entry (the marker excepted) for the digest. */
static int trusted_tree(int dirfd, int depth, const char *rel, struct state *state) {
    DIR *d = fdopendir(dirfd);
    struct dirent *e;
    struct stat st;
    char path[PATH_MAX];
    int ok = 1;
    if (!d) return 0;
    while (ok && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !trusted_stat(&st)) { ok = 0; break; }
        snprintf(path, sizeof path, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
        if (state && strcmp(path, MARKER)) state_add(state, path, &st);
        if (S_ISDIR(st.st_mode)) {
            int sub = depth < 32 ? openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
            ok = sub >= 0 && trusted_tree(sub, depth + 1, path, state);
        } else if (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) {
            ok = 0;
        }
    }
    closedir(d);
    return ok;
}

/* The digest of the tree in `dirfd` (not closed), or 0 if it is not trusted. */
static int tree_state(int dirfd, char out[65]) {
    struct state s = {0};
    int fd = dup(dirfd);
    int ok = fd >= 0 && lseek(fd, 0, SEEK_SET) == 0 && trusted_tree(fd, 0, "", &s);
    if (ok) state_hex(&s, out);
    free(s.entry);
    return ok;
}

static int chain_trusted(const char *path) {
    return owner == 0 ? trusted_chain(path) : user_chain(path, 0);
}

static int cache_usable(const char *dir) {
    char marker[PATH_MAX], text[160], state[65];
    struct stat st;
    if (!chain_trusted(dir)) return 0;
    snprintf(marker, sizeof marker, "%s/" MARKER, dir);
    if (lstat(marker, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return 0;
    if (owner == 0) return trusted_tree(fd, 0, "", NULL);
    /* The user's: the marker names the bundle and the tree's state as unpacked. */
    int mfd = openat(fd, MARKER, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    ssize_t n = mfd >= 0 ? read(mfd, text, sizeof text) : -1;
    if (mfd >= 0) close(mfd);
    int ok = n == 129 && text[64] == '\n' && tree_state(fd, state) && memcmp(text + 65, state, 64) == 0;
    close(fd);
    return ok;
}

/* Root's private copy goes under `path` only if, from "/" down, every component is a real dir (no
 * symlink), root-owned, not FUSE (its owner makes up owners), and not writable by others unless sticky
 * (nobody else can then rename or remove what root makes in it). The walk holds each dir by fd, so
 * what is checked is what is used. Returns an O_PATH fd of the last one and its path in `norm`, or -1
 * with the reason in `why` (empty: a system error, in errno). */
static int open_private_parent(const char *path, char *norm, size_t normsize, char *why, size_t whysize) {
    char buf[PATH_MAX];
    struct stat st;
    struct statfs fs;
    why[0] = 0;
    if (geteuid() != 0) {
        snprintf(norm, normsize, "%s", path);
        return open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    }
    if (strlen(path) >= sizeof buf) return errno = ENAMETOOLONG, -1;
    strcpy(buf, path);
    int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    snprintf(norm, normsize, "/");
    for (char *c = strtok(buf, "/");; c = strtok(NULL, "/")) {
        if (fd < 0) return -1;
        if (fstat(fd, &st) != 0 || fstatfs(fd, &fs) != 0) return close(fd), -1;
        if (st.st_uid != 0 || ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX)) ||
            fs.f_type == 0x65735546 /* FUSE */) {
            snprintf(why, whysize, "TMPDIR %s is not safe for root: %s is %s (root unpacks only where "
                     "nobody else can write; unset TMPDIR or use su -)", path, norm,
                     st.st_uid != 0 ? "not owned by root" : fs.f_type == 0x65735546 ? "on FUSE"
                                                                                    : "writable by others");
            return close(fd), -1;
        }
        if (!c) return fd;
        if (!strcmp(c, ".")) continue;
        int next = strcmp(c, "..") ? openat(fd, c, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
        if (next < 0) {
            int err = errno;
            if (!strcmp(c, "..") || err == ENOTDIR || err == ELOOP)
                snprintf(why, whysize, "TMPDIR %s is not safe for root: %s%s%s is not a directory (no "
                         "symlinks or .. for root; unset TMPDIR or use su -)", path, norm,
                         strcmp(norm, "/") ? "/" : "", c);
            close(fd);
            errno = err;
            return -1;
        }
        close(fd);
        fd = next;
        size_t n = strlen(norm);
        snprintf(norm + n, normsize - n, "%s%s", n > 1 ? "/" : "", c);
    }
}

/* ---- running --------------------------------------------------------------------------------- */
/* Exec the program in `dir`, through its fd if given. Returns only if the exec failed (e.g. noexec). */
static void try_exec(int dirfd, const char *dir, char **argv, const char *self_path) {
    static char prog[PATH_MAX];
    snprintf(prog, sizeof prog, "%s/" PROGRAM, dir);
    setenv("HOSTAGENT_EXECUTABLE", self_path, 1);
    argv[0] = prog; /* the frozen program finds its files from argv[0] where /proc is missing */
    if (dirfd >= 0)
        execveat(dirfd, PROGRAM, argv, environ, AT_SYMLINK_NOFOLLOW);
    else
        execv(prog, argv);
}

/* Exec the cached copy `dir` if it is usable. A shared flock on its marker, held until the exec (the
 * fd is close-on-exec, and by then this process's exe is under dir), keeps another version's run from
 * removing it in between. Only root can open the marker (0600), so no one else can hold the lock. */
static void run_cached(const char *dir, char **argv, const char *self_path) {
    char marker[PATH_MAX];
    snprintf(marker, sizeof marker, "%s/" MARKER, dir);
    struct stat st;
    int fd = open(marker, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    /* A copy an older stub made (same bundle) has a 0644 marker: others could lock it, so make it 0600. */
    if (fd >= 0 && geteuid() == 0 && fstat(fd, &st) == 0 && st.st_uid == 0 && (st.st_mode & 077))
        fchmod(fd, 0600);
    if (fd >= 0 && flock(fd, LOCK_SH | LOCK_NB) != 0) {
        close(fd); /* being removed by another version's run */
        return;
    }
    if (cache_usable(dir)) try_exec(-1, dir, argv, self_path);
    if (fd >= 0) close(fd);
}

/* ---- tidying the cache ----------------------------------------------------------------------- */
/* An older stub's .unpack-* dir has no flock: it counts as abandoned this long after its last entry
 * (an unpack takes about a second). */
#define OLD_UNPACK_AGE 600

static int is_sha(const char *s) {
    size_t n = 0;
    for (; s[n]; n++)
        if (!strchr("0123456789abcdef", s[n])) return 0;
    return n == 64;
}

/* Some process runs a program from under `dir` (its /proc/PID/exe). No /proc: nobody can tell, so yes. */
static int in_use(const char *dir) {
    char link[64], target[PATH_MAX];
    size_t n = strlen(dir);
    if (readlink("/proc/self/exe", target, sizeof target) <= 0) return 1;
    DIR *d = opendir("/proc");
    struct dirent *e;
    int used = d == NULL;
    while (!used && d && (e = readdir(d))) {
        if (!isdigit((unsigned char)e->d_name[0])) continue;
        snprintf(link, sizeof link, "/proc/%.40s/exe", e->d_name);
        ssize_t k = readlink(link, target, sizeof target - 1);
        if (k <= 0) continue;
        target[k] = 0;
        used = strncmp(target, dir, n) == 0 && target[n] == '/';
    }
    if (d) closedir(d);
    return used;
}

/* A partial dir nobody holds the flock of (its unpacker or remover is gone), or an older stub's
 * .unpack-* dir older than OLD_UNPACK_AGE: removed. */
static void remove_abandoned(int cache, const char *name, int min_age) {
    struct stat st, now;
    int fd = openat(cache, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return;
    if (fstat(fd, &st) == 0 && st.st_uid == owner && (!min_age || time(NULL) - st.st_mtime > min_age) &&
        flock(fd, LOCK_EX | LOCK_NB) == 0 && fstatat(cache, name, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
        now.st_ino == st.st_ino && now.st_dev == st.st_dev)
        remove_dir_at(cache, name, fd);
    close(fd);
}

/* Another version's copy: removed if a stub made it (a root-owned dir whose root-owned marker holds
 * its name) and nothing uses it: no run between its check and its exec (they hold the marker's flock
 * shared) and no process running from it (a running `hostagent exec` or k8s-sync of the old version
 * keeps its copy until it ends). It is renamed to a .partial-* first: a stub that looks for it after
 * that unpacks afresh, and a removal cut short is finished by the next run. */
static void remove_other_version(int cache, const char *name) {
    char path[PATH_MAX], text[160], gone[32];
    struct stat st, mst;
    int fd = openat(cache, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return;
    int mfd = openat(fd, MARKER, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    ssize_t n;
    if ((size_t)snprintf(path, sizeof path, "%s/%s", cache_root, name) < sizeof path && mfd >= 0 && fstat(fd, &st) == 0 && trusted_stat(&st) && fstat(mfd, &mst) == 0 && S_ISREG(mst.st_mode) &&
        mst.st_uid == owner && (n = read(mfd, text, sizeof text)) >= 64 && memcmp(text, name, 64) == 0 &&
        (n == 64 || text[64] == '\n') &&
        flock(mfd, LOCK_EX | LOCK_NB) == 0 && flock(fd, LOCK_EX | LOCK_NB) == 0 && !in_use(path)) {
        for (int tries = 0; tries < 100; tries++) {
            random_name(".partial-", gone);
            if (renameat2(cache, name, cache, gone, RENAME_NOREPLACE) == 0) {
                remove_dir_at(cache, gone, fd);
                break;
            }
            if (errno != EEXIST) break;
        }
    }
    if (mfd >= 0) close(mfd);
    close(fd);
}

/* At every start from a trusted cache (a readdir of the cache; more only when something is there to remove). */
static void tidy_cache(const char *own) {
    char names[32][72];
    int n = 0, cache = open(cache_root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (cache < 0) return;
    int listfd = dup(cache);
    DIR *d = listfd >= 0 ? fdopendir(listfd) : NULL;
    struct dirent *e;
    while (d && n < 32 && (e = readdir(d))) {
        const char *s = e->d_name;
        if (strlen(s) < sizeof names[0] &&
            (!strncmp(s, ".partial-", 9) || !strncmp(s, ".unpack-", 8) || (is_sha(s) && strcmp(s, own))))
            strcpy(names[n++], s);
    }
    if (d) closedir(d);
    for (int i = 0; i < n; i++) {
        if (names[i][0] != '.')
            remove_other_version(cache, names[i]);
        else
            remove_abandoned(cache, names[i], names[i][1] == 'u' ? OLD_UNPACK_AGE : 0);
    }
    close(cache);
}

/* ---- unpacking ------------------------------------------------------------------------------- */
/* mkdir -p, 0755 (a bare chroot may lack even /var). */
static void mkdir_parents(const char *path) {
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        mkdir(buf, 0755);
        *p = '/';
    }
    mkdir(buf, 0755);
}

/* Unpack into CACHE/.partial-XXXXXX and rename it to `dir` when complete; 0 if `dir` now exists. */
static int unpack_to_cache(int self, const struct trailer *t, const char *dir) {
    int cache = open(cache_root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (cache < 0) return -1;
    hold_signals();
    int fd = fresh_dir(cache, ".partial-");
    if (fd < 0) {
        release_signals();
        close(cache);
        return -1;
    }
    unpack(self, t, fd);
    patch_program(fd, dir);
    /* Root's marker names the bundle; the user's also records the tree's state (cache_usable). */
    char text[130], state[65];
    int len = owner == 0 ? 64 : 129;
    if (owner != 0 && !tree_state(fd, state)) die("cache: unpacked tree not as expected", 0);
    snprintf(text, sizeof text, "%s\n%s", t->sha, owner == 0 ? "" : state);
    int mfd = openat(fd, MARKER, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (mfd < 0 || write(mfd, text, (size_t)len) != len || close(mfd) != 0) die("marker", errno);
    syncfs(fd);
    if (fchmod(fd, 0755) != 0) die("cache", errno);
    check_signals();
    if (renameat(cache, partial.name, cache, t->sha) == 0) {
        partial.fd = -1;
        close(fd);
    } else {
        drop_partial(); /* another run was first: use its copy */
    }
    close(cache);
    release_signals(); /* one that came after the rename acts now: the copy is complete */
    return 0;
}

/* Not root: the user's own cache, $XDG_CACHE_HOME/hostagent or else $HOME/.cache/hostagent (relative
 * values ignored, as XDG says), made 0700 if missing. 0 if there is none that passes user_chain (no
 * HOME, a read-only home, a path through a symlink or someone else's dir): then a per-run copy. */
static int user_cache(void) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char base[PATH_MAX];
    if (xdg && xdg[0] == '/')
        snprintf(base, sizeof base, "%s", xdg);
    else if (home && home[0] == '/')
        snprintf(base, sizeof base, "%s/.cache", home);
    else
        return 0;
    if (strlen(base) > PATH_MAX / 2 || strstr(base, "/./") || strstr(base, "/../")) return 0;
    size_t n = strlen(base);
    if ((n >= 2 && !strcmp(base + n - 2, "/.")) || (n >= 3 && !strcmp(base + n - 3, "/.."))) return 0;
    snprintf(cache_root, sizeof cache_root, "%s/hostagent", base);
    owner = geteuid();
    return user_chain(cache_root, 1);
}

/* The user's copy `name` that failed cache_usable: renamed to a .partial-* and removed, unless a run
 * holds its marker's lock (between its check and its exec). 1 if `name` is gone. */
static int set_aside(const char *name) {
    char gone[32];
    int ok = 0, cache = open(cache_root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (cache < 0) return 0;
    int fd = openat(cache, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        ok = errno == ENOENT;
        close(cache);
        return ok;
    }
    int mfd = openat(fd, MARKER, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if ((mfd < 0 || flock(mfd, LOCK_EX | LOCK_NB) == 0) && flock(fd, LOCK_EX | LOCK_NB) == 0) {
        for (int tries = 0; tries < 100 && !ok; tries++) {
            random_name(".partial-", gone);
            if (renameat2(cache, name, cache, gone, RENAME_NOREPLACE) == 0) {
                remove_dir_at(cache, gone, fd);
                ok = 1;
            } else if (errno != EEXIST) {
                break;
            }
        }
    }
    if (mfd >= 0) close(mfd);
    close(fd);
    close(cache);
    return ok;
}

static pid_t child;
static volatile sig_atomic_t got_signal;
static void forward(int sig) {
    if (child > 0)
        kill(child, sig);
    else
        got_signal = sig;
}

static void exec_program(int dirfd, const char *dir, char **argv, const char *self_path) {
    try_exec(dirfd, dir, argv, self_path);
    int err = errno;
    fprintf(stderr, "%s: single file: cannot run %s/" PROGRAM " (is %s mounted noexec? set TMPDIR): %s\n",
            self_name, dir, dir, strerror(err));
    drop_partial();
    _exit(2);
}

/* A private copy for this run only; removed when the program exits (`exec`: left to PrivateTmp). */
static int run_private(int self, const struct trailer *t, char **argv, const char *self_path) {
    char where[PATH_MAX], dir[PATH_MAX], why[2 * PATH_MAX + 200];
    const char *tmpdir = getenv("TMPDIR");
    if (!tmpdir || tmpdir[0] != '/') tmpdir = "/tmp";
    int parent = open_private_parent(tmpdir, where, sizeof where, why, sizeof why);
    if (parent < 0 && why[0]) die(why, 0);
    hold_signals();
    int fd = parent < 0 ? -1 : fresh_dir(parent, "hostagent-");
    if (fd < 0 || (size_t)snprintf(dir, sizeof dir, "%s%s%s", where, strcmp(where, "/") ? "/" : "",
                                   partial.name) >= sizeof dir)
        die("cannot unpack (set TMPDIR to a writable directory)", errno);
    unpack(self, t, fd);
    patch_program(fd, dir);
    close(self);
    /* `exec` that starts the agent: no root parent may stay behind it, so the program is exec'd and told
     * its copy (HOSTAGENT_UNPACKED) to remove just before it execs the agent. `exec --prepare-only` and
     * `exec --cleanup` (ExecStartPre=+/ExecStopPost=+, outside PrivateTmp) run as a child like any other
     * command: their copy goes when they end. */
    int exec_only = geteuid() == 0 && argv[1] && strcmp(argv[1], "exec") == 0; /* not root: a child */
    for (int i = 2; exec_only && argv[i] && strcmp(argv[i], "--"); i++)
        if (!strcmp(argv[i], "--prepare-only") || !strcmp(argv[i], "--cleanup")) exec_only = 0;
    if (exec_only) setenv("HOSTAGENT_UNPACKED", dir, 1);
    struct sigaction sa = {0};
    sa.sa_handler = forward;
    for (int sig = 1; sig < 32 && !exec_only; sig++)
        if (sig != SIGCHLD && sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &sa, NULL);
    check_signals();
    release_signals();
    if (exec_only) exec_program(fd, dir, argv, self_path);
    if (got_signal) die_of(got_signal);
    child = fork();
    if (child < 0) die("fork", errno);
    if (child == 0) exec_program(fd, dir, argv, self_path);
    if (got_signal) kill(child, got_signal);
    int status = 0;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
    drop_partial();
    if (WIFSIGNALED(status)) {
        signal(WTERMSIG(status), SIG_DFL);
        kill(getpid(), WTERMSIG(status));
        return 128 + WTERMSIG(status);
    }
    return WEXITSTATUS(status);
}

int main(int argc, char **argv) {
    char self_path[PATH_MAX], dir[PATH_MAX];
    struct trailer t;
    (void)argc;
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (n > 0) {
        self_path[n] = 0;
    } else if (argv[0] && strchr(argv[0], '/') && realpath(argv[0], self_path)) {
        /* no /proc (a bare chroot): argv[0] names the file */
    } else {
        die("cannot find this file (no /proc/self/exe, and argv[0] is not a path)", 0);
    }
    const char *base = strrchr(self_path, '/');
    self_name = base ? base + 1 : self_path;
    int self = open(self_path, O_RDONLY | O_CLOEXEC);
    if (self < 0) die(self_path, errno);
    if (read_trailer(self, &t) != 0) die("no bundle in this file", 0);

    int root = geteuid() == 0;
    snprintf(dir, sizeof dir, CACHE_ROOT "/%s", t.sha);
    if (!root) {
        /* Root's copy first, when it passes root's checks: shared by every user (a service's own user
         * runs what root installed, and k8s-sync install checks that), nothing to unpack. */
        run_cached(dir, argv, self_path);
        if (user_cache() && (size_t)snprintf(dir, sizeof dir, "%s/%s", cache_root, t.sha) < sizeof dir) {
            tidy_cache(t.sha);
            run_cached(dir, argv, self_path);
            /* Missing, or changed since it was unpacked: the user's own, so replaced. (One that passes but
             * cannot be executed, on a noexec mount, stays: the per-run copy below is used instead.) */
            if ((access(dir, F_OK) != 0 || !cache_usable(dir)) && set_aside(t.sha) && unpack_to_cache(self, &t, dir) == 0)
                run_cached(dir, argv, self_path);
        }
        return run_private(self, &t, argv, self_path);
    }
    if (root && trusted_chain(CACHE_ROOT)) tidy_cache(t.sha);
    run_cached(dir, argv, self_path);

    if (root && access(dir, F_OK) != 0) {
        mkdir_parents(CACHE_ROOT);
        if (trusted_chain(CACHE_ROOT) && unpack_to_cache(self, &t, dir) == 0) run_cached(dir, argv, self_path);
    }
    return run_private(self, &t, argv, self_path);
}
