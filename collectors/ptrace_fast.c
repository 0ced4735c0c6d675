/* stprof's ptrace fast path: the syscall-stops of known threads, in C.
 *
 * Built by `make setup` into collectors/_ptrace_fast.so and driven through
 * ctypes by collectors/ptrace_fast.py.  Here: the syscall-stops, signal
 * deliveries, a new child's first stop, fork and vfork events and deaths of
 * known threads, each resumed at once, its bookkeeping left to Python in a
 * batch of records.  python-ptrace and the Python loop of
 * collectors/ptrace_loop.py keep the rest (exec, exit and clone events,
 * seccomp stops, group-stops, a thread met for the first time, the rare
 * entry taken for an exit).
 *
 * Per syscall the tracee stops twice.  The entry stop costs here one
 * waitpid, one clock read and PTRACE_SYSCALL; the exit stop one waitpid, one
 * clock read, PTRACE_GETREGS (orig_rax: the number; rax: the result) and the
 * resume.  The call is then appended to a batch of records that Python
 * counts once the batch is full or the tracees are quiet: Python never runs
 * between the two stops of a call.
 *
 * Waiting.  On a virtual machine a CPU with nothing to run halts, and the
 * wake-up of a halted CPU (the tracer's, when the tracee stops; the
 * tracee's, when the tracer resumes it) costs tens of microseconds: more
 * than the whole stop.  So before it sleeps in waitpid the tracer polls
 * for the next stop for up to spin_ns (WNOHANG): a tracee that stops again
 * within a few microseconds finds the tracer awake.  When the tracees stay
 * quiet longer, fast_run returns FAST_IDLE and Python sleeps in its own
 * blocking waitpid, where signals (the interval clock, SIGUSR1) interrupt it
 * as they always did.  Each poll first yields the CPU (sched_yield), so a
 * tracee or another program waiting for this CPU runs at once; and the
 * window adapts: after a sleep that polling a little longer would have
 * spared, it is back to spin_max_ns at once; after a long sleep it halves,
 * down to an eighth, so a tracee that mostly blocks (a server, a build's
 * compiler) costs the tracer little polling.  (A sleep looks long also when
 * the wake-up itself was slow, as it is on a busy host: the floor keeps such
 * spells from ending the polling for good.)
 *
 * The thread table: tid -> (pending, entry_ns), open addressing with linear
 * probing.  pending is OUTSIDE between calls, else the syscall number or
 * UNKNOWN_NR (x86-64 reads the number at the exit).  Python owns the truth
 * around every stop it handles: it copies the states out before and back in
 * after (fast_get / fast_set / fast_remove).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>

#define OUTSIDE (-1)
#define UNKNOWN_NR ((int64_t)1 << 40)
/* a syscall-stop under PTRACE_O_TRACESYSGOOD: stopped, SIGTRAP | 0x80, no event */
#define SYSCALL_STOP_STATUS ((((0x80 | SIGTRAP) << 8)) | 0x7f)
#define ENOSYS_RAX ((uint64_t)(-(int64_t)ENOSYS))

enum { FAST_FULL = 0, FAST_OTHER = 1, FAST_IDLE = 2, FAST_FAILED = 3 };

/* One record of the batch Python reads, 6 x 64 bits.  A finished call:
 * tid, nr, rax, entry_ns, exit_ns, 0.  An event whose bookkeeping waits for
 * Python (the stop itself was handled here): tid, EVENT_BASE + kind, and:
 *   EVENT_CHILD  new pid, its ptrace event (fork or vfork), time
 *   EVENT_DEATH  wait status, the call pending then, its entry, time      */
struct fast_record {
    uint64_t tid, nr, a, b, c, d;
};

#define EVENT_BASE ((uint64_t)1 << 41)  /* above any number (and UNKNOWN_NR) */
enum { EVENT_CHILD = 1, EVENT_DEATH = 2 };

struct fast_thread {
    int32_t tid;
    int32_t used;
    int64_t pending;
    int64_t entry_ns;
};

struct fast_loop {  /* shared with Python (collectors/ptrace_fast.py: Loop) */
    struct fast_record *records;
    int64_t capacity;
    int64_t count;        /* records waiting for Python */
    int64_t spin_ns;      /* how long to poll before FAST_IDLE (adapts) */
    int64_t spin_max_ns;  /* the window's bound */
    int64_t idle_since;   /* FAST_IDLE: when the polling began */
    int64_t cont_exit;    /* the request that resumes a thread after an exit */
    int64_t resume_outside;  /* ... and one outside a call (PTRACE_CONT under seccomp) */
    int64_t other_tid;    /* FAST_OTHER: the stop left for Python */
    int64_t other_status;
    int64_t other_ns;
    int64_t error;        /* FAST_FAILED: waitpid's errno */
    int64_t polls;        /* waitpid(WNOHANG) calls that found nothing */
    int64_t idles;        /* spins that ended in FAST_IDLE */
    struct fast_thread *table;
    int64_t slots;        /* a power of two */
    int64_t used;
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t home(const struct fast_loop *l, int32_t tid)
{
    return (int64_t)(((uint32_t)tid * 2654435761u) & (uint32_t)(l->slots - 1));
}

static struct fast_thread *find(const struct fast_loop *l, int32_t tid)
{
    for (int64_t i = home(l, tid);; i = (i + 1) & (l->slots - 1)) {
        struct fast_thread *t = &l->table[i];
        if (!t->used)
            return NULL;
        if (t->tid == tid)
            return t;
    }
}

int fast_init(struct fast_loop *l)
{
    l->slots = 64;
    l->used = 0;
    l->table = calloc((size_t)l->slots, sizeof *l->table);
    return l->table ? 0 : -1;
}

void fast_free(struct fast_loop *l)
{
    free(l->table);
    l->table = NULL;
    l->slots = l->used = 0;
}

static void place(struct fast_loop *l, int32_t tid, int64_t pending, int64_t entry_ns)
{
    int64_t i = home(l, tid);
    while (l->table[i].used)
        i = (i + 1) & (l->slots - 1);
    l->table[i] = (struct fast_thread){tid, 1, pending, entry_ns};
    l->used++;
}

/* Insert or update a thread; -1 if memory ran out. */
int fast_set(struct fast_loop *l, int32_t tid, int64_t pending, int64_t entry_ns)
{
    struct fast_thread *t = find(l, tid);
    if (t) {
        t->pending = pending;
        t->entry_ns = entry_ns;
        return 0;
    }
    if ((l->used + 1) * 2 > l->slots) {  /* keep it at most half full */
        struct fast_thread *old = l->table;
        int64_t old_slots = l->slots;
        struct fast_thread *grown = calloc((size_t)old_slots * 2, sizeof *grown);
        if (!grown)
            return -1;
        l->table = grown;
        l->slots = old_slots * 2;
        l->used = 0;
        for (int64_t i = 0; i < old_slots; i++)
            if (old[i].used)
                place(l, old[i].tid, old[i].pending, old[i].entry_ns);
        free(old);
    }
    place(l, tid, pending, entry_ns);
    return 0;
}

/* 1 and the state if the thread is known, else 0. */
int fast_get(const struct fast_loop *l, int32_t tid, int64_t *pending, int64_t *entry_ns)
{
    const struct fast_thread *t = find(l, tid);
    if (!t)
        return 0;
    *pending = t->pending;
    *entry_ns = t->entry_ns;
    return 1;
}

/* Forget a thread (linear probing: later entries of its cluster move up). */
void fast_remove(struct fast_loop *l, int32_t tid)
{
    struct fast_thread *t = find(l, tid);
    if (!t)
        return;
    int64_t mask = l->slots - 1;
    int64_t hole = t - l->table;
    for (int64_t j = (hole + 1) & mask; l->table[j].used; j = (j + 1) & mask) {
        int64_t want = home(l, l->table[j].tid);
        /* the entry at j may fill the hole unless its home lies in (hole, j] */
        int in_between = hole <= j ? (hole < want && want <= j) : (hole < want || want <= j);
        if (!in_between) {
            l->table[hole] = l->table[j];
            hole = j;
        }
    }
    l->table[hole].used = 0;
    l->used--;
}

static struct fast_record *record(struct fast_loop *l, int32_t tid, uint64_t nr)
{
    struct fast_record *r = &l->records[l->count++];
    r->tid = (uint64_t)tid;
    r->nr = nr;
    return r;
}

static void resume(const struct fast_loop *l, const struct fast_thread *th, int sig)
{
    long request = th->pending == OUTSIDE ? l->resume_outside : PTRACE_SYSCALL;
    ptrace((enum __ptrace_request)request, th->tid, 0, (void *)(long)sig);
}

/* A stop that is not a syscall-stop, of a known thread: 1 if handled here.
 * Here: signal-delivery stops (the signal is delivered), the stops that start
 * a new child or end a PTRACE_INTERRUPT, fork and vfork events (the child is
 * known from now on; Python registers it from the record, without /proc),
 * deaths.  Python: exec (it may move another thread's state), the exit event
 * (Python reads /proc before the thread is reaped), clone (a thread's process
 * is read from /proc while it is sure to be there), seccomp, group-stops. */
static int other_stop(struct fast_loop *l, struct fast_thread *th, int32_t status, int64_t t)
{
    int32_t tid = th->tid;
    if (!WIFSTOPPED(status)) {
        struct fast_record *r = record(l, tid, EVENT_BASE + EVENT_DEATH);
        r->a = (uint64_t)(uint32_t)status;
        r->b = (uint64_t)th->pending;
        r->c = (uint64_t)th->entry_ns;
        r->d = (uint64_t)t;
        fast_remove(l, tid);
        return 1;
    }
    int sig = (status >> 8) & 0xff, event = status >> 16;
    if (event == 0) {  /* signal-delivery stop: deliver it */
        resume(l, th, sig);
        return 1;
    }
    if (event == PTRACE_EVENT_STOP) {
        if (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU)
            return 0;  /* a group-stop: Python listens */
        resume(l, th, 0);
        return 1;
    }
    if (event == PTRACE_EVENT_FORK || event == PTRACE_EVENT_VFORK) {
        unsigned long child = 0;
        if (ptrace(PTRACE_GETEVENTMSG, tid, 0, &child) == -1)
            return 0;
        resume(l, th, 0);
        if (child && !find(l, (int32_t)child)) {
            if (fast_set(l, (int32_t)child, OUTSIDE, 0) != 0)
                return 1;  /* no memory: its first stop goes to Python */
            struct fast_record *r = record(l, tid, EVENT_BASE + EVENT_CHILD);
            r->a = child;
            r->b = (uint64_t)event;
            r->c = (uint64_t)t;
        }
        return 1;
    }
    return 0;
}

/* One stop: 1 if handled here, 0 if it is Python's (see the top). */
int fast_handle(struct fast_loop *l, int32_t tid, int32_t status, int64_t t)
{
    struct fast_thread *th = find(l, tid);
    if (!th)
        return 0;  /* met for the first time (or not ours): Python adopts it */
    if (status != SYSCALL_STOP_STATUS)
        return other_stop(l, th, status, t);
    if (th->pending == OUTSIDE) {  /* an entry: its number is read at the exit */
        ptrace(PTRACE_SYSCALL, tid, 0, 0);
        th->pending = UNKNOWN_NR;
        th->entry_ns = t;
        return 1;
    }
    struct user_regs_struct regs;
    if (ptrace(PTRACE_GETREGS, tid, 0, &regs) == -1)
        return 1;  /* killed meanwhile: its death is reported next */
    if (regs.rax == ENOSYS_RAX)
        return 0;  /* an entry taken for an exit, or a real ENOSYS: Python asks */
    ptrace((enum __ptrace_request)l->cont_exit, tid, 0, 0);
    struct fast_record *r = record(l, tid, regs.orig_rax);
    r->a = regs.rax;
    r->b = (uint64_t)th->entry_ns;
    r->c = (uint64_t)t;
    r->d = 0;
    th->pending = OUTSIDE;
    return 1;
}

/* Handle stops until the batch is full, a stop is Python's, the tracees
 * stay quiet for spin_ns, or waitpid fails. */
int fast_run(struct fast_loop *l)
{
    for (;;) {
        if (l->count >= l->capacity)
            return FAST_FULL;
        int status = 0;
        pid_t tid = waitpid(-1, &status, __WALL | WNOHANG);
        if (tid == 0) {
            int64_t start = now_ns(), until = start + l->spin_ns;
            do {
                l->polls++;
                sched_yield();
                tid = waitpid(-1, &status, __WALL | WNOHANG);
            } while (tid == 0 && now_ns() < until);
            if (tid == 0) {
                l->idles++;
                l->idle_since = start;
                return FAST_IDLE;
            }
        }
        if (tid < 0) {
            if (errno == EINTR)
                continue;
            l->error = errno;
            return FAST_FAILED;
        }
        int64_t t = now_ns();
        if (!fast_handle(l, tid, status, t)) {
            l->other_tid = tid;
            l->other_status = status;
            l->other_ns = t;
            return FAST_OTHER;
        }
    }
}

/* The stop that ended Python's sleep after FAST_IDLE: adapt the window (see
 * the top), then handle the stop as fast_handle does. */
int fast_woken(struct fast_loop *l, int32_t tid, int32_t status, int64_t t)
{
    int64_t slept = t - l->idle_since;
    if (slept <= 2 * l->spin_max_ns)
        l->spin_ns = l->spin_max_ns;  /* polling on would have caught it */
    else if (l->spin_ns > l->spin_max_ns / 8)
        l->spin_ns /= 2;  /* never below an eighth: slow wake-ups must not end polling */
    return fast_handle(l, tid, status, t);
}
