/*
 * stprof's in-kernel half (bcc).  Counts syscalls, page faults, interrupts
 * and where time went for one process tree, entirely in maps: nothing is sent
 * to user space per event.  collectors/ebpf.py specialises it with -D flags:
 *
 *   FOLLOW          1: children join the traced set at fork; 0: threads only
 *   RAW_SYSCALLS    1: raw tracepoints for sys_enter/sys_exit (cheaper)
 *   RAW_EVENTS      1: device irq and softirq probes read their raw tracepoint
 *                   arguments (attached by hand as raw tracepoints, like the
 *                   fault and vector probes, which read none); 0: they are
 *                   regular TRACEPOINT_PROBEs.  Raw tracepoints detach in well
 *                   under a millisecond, regular (perf event) ones take ~75 ms
 *                   each; only the sched/task probes, which need task_struct
 *                   fields (read safely through tracefs' formats), stay regular
 *   FAULT_ENTRY_TP  1: exceptions:page_fault_* tracepoints mark fault entry
 *                   0: the page-faults software event does (no such tracepoints)
 *   FAULT_TIMED     1: minor-/major-faults software events mark completion
 *   STACK_FILTER    0: no stack sampling (on_sample is not compiled);
 *                   1: sample stacks only inside faults; 2: all kernel time
 *   VECTORS         1: compile vec_in/vec_out, the x86 vectors' shared pair
 *                   (the plan sets it when it attaches any); a probe that is not
 *                   attached is not compiled either (the compile is most of
 *                   stprof's start-up)
 *   VECNR_<name>    the number of x86 vector <name> (see vector_kind)
 *   NR_EXECVE NR_EXECVEAT NR_EXIT NR_EXIT_GROUP   this ABI's syscall numbers
 *   NR_RT_SIGRETURN NR_RESTART_SYSCALL           (-1 where the ABI has none)
 *   MAX_THREADS MAX_PROCS MAX_SYSCALLS STACK_ENTRIES   map sizes
 *   TIMELINE        1: also send each syscall, timed fault, interrupt and thread
 *                   end to user space through the ring buffer `tl_events`
 *                   (stprof run --timeline); 0: none of that code is compiled
 *   TIMELINE_PAGES  the ring buffer's size in pages (a power of 2)
 *   TIMELINE_RINGBUF  1: a BPF ring buffer (Linux 5.8+); 0: a perf buffer, whose
 *                   output needs the probe's context: the functions that emit
 *                   take it as `ctx` (unused without TIMELINE)
 *   TRACE_SET       1: -e trace=SET: only the calls whose number is set in the
 *                   array `trace_set` are counted (the budget still sees all)
 *   SYSCALL_TPS     1: --no-budget with a trace set: no raw sys_enter/sys_exit
 *                   probes; on_sc_enter/on_sc_exit are attached by hand to the
 *                   set's syscalls:sys_enter_NAME/sys_exit_NAME tracepoints
 *
 * Each traced thread has one entry in `traced`, keyed by tid.  While it runs,
 * its state is checked out to its CPU's `oncpu` slot (filled at sched_switch,
 * written back when it is switched out), so the hot path (sys_enter/sys_exit)
 * finds it with per-CPU array lookups and no hash lookup, and knows the slot
 * is the caller's by its pt_regs pointer, without a helper call (see
 * syscall_thread); the slot of an untraced thread says so, and its syscalls
 * return after the same lookups.
 * Slots are valid only with the current generation (`gens`), which user space
 * bumps when it adds threads (untraced slots may be wrong) and when a run
 * ends; then it sets `stopped` too, and every probe leaves all state as it
 * is until the next run, so that user space reads a consistent picture.
 * Every state change of a thread first "charges" the time since its
 * previous event to the state it was in, so the charges of a thread add up to
 * its lifetime; spans whose state is not known are charged to C_UNKNOWN.
 */
#include <uapi/linux/ptrace.h>
/* perf_event programs take a struct bpf_perf_event_data *; they only pass it
 * on, and <uapi/linux/bpf_perf_event.h> triples the compile time: void * it is. */

#define HIST_SLOTS 48
#define TASK_COMM 16
#define CLONE_THREAD_FLAG 0x00010000ULL
#define MAX_ERRNO 4095
#define MAX_IRQ_DEPTH 8

/* PH_EXITING: its books are being closed; probes leave it alone */
enum phase { PH_ARMED = 1, PH_NEW = 2, PH_ACTIVE = 3, PH_EXITING = 4 };
enum mode { M_UNKNOWN = 0, M_USER = 1, M_SYSCALL = 2, M_FAULT = 3 };
enum run { R_UNKNOWN = 0, R_ONCPU = 1, R_BLOCKED = 2, R_QUEUED = 3 };

/* Where a span of a thread's life is charged (ebpf.py maps these to Budget). */
enum charge {
    C_USER, C_SYS_CPU, C_SYS_BLOCKED,
    C_FAULT_USER_CPU, C_FAULT_USER_OFF, C_FAULT_SYS_CPU, C_FAULT_SYS_OFF,
    C_IRQ, C_RUNQ, C_UNKNOWN, NCHARGE
};

/* Things that could not be counted; reported in the profile's notes. */
enum drop {
    D_THREADS_FULL, D_PROCS_FULL, D_ERRNOS_FULL, D_STACK_LOST, D_STACK_COUNTS_FULL,
    D_IRQ_UNBALANCED, D_SYSCALL_RANGE, D_HIST_CLAMPED, D_INCONSISTENT, D_TASKS_FULL, NDROP
};

/* Interrupt kinds: 0..9 x86 vectors, 10 device irq handlers (all; per irq
 * number in irqdevs), 11.. softirqs. */
#define IRQ_HANDLER 10
#define IRQ_SOFTIRQ 11
#define NIRQKIND (IRQ_SOFTIRQ + 10)

struct thread {
    u64 start;          /* lifetime start (exec entry, wakeup_new, attach) */
    u64 last;           /* time of the previous charge */
    u64 sys_start;
    u64 fault_ts;       /* page-faults software event of the open fault */
    u64 pend_cpu;       /* open fault's on-CPU time, until it completes */
    u64 pend_off;       /* open fault's blocked time, until it completes */
    u64 charge[NCHARGE];
    u64 syscalls;
    u64 sys_errors;
    u64 syscall_ns;
    u64 minflt;
    u64 majflt;
    u64 fault_ns;
    u64 intr_ns;        /* time of the interrupted attempt of intr_key */
    u64 intr_start;     /* when that attempt entered (its timeline slice) */
    s32 sys_nr;         /* syscall in progress, -1 if none (or not counted) */
    u32 tgid;
    u32 intr_key;       /* 1 + the syscall interrupted with a restart code,
                         * 0 if none (see record_call) */
    u8 phase;
    u8 mode;
    u8 run;
    u8 irq_depth;
    u8 fault_in_sys;
    u8 pad[3];
};

struct proc {
    u64 syscalls;
    u64 sys_errors;
    u64 syscall_ns;
    u64 minflt;
    u64 majflt;
    u64 fault_ns;
    u64 user_ns;
    u64 sys_ns;
    u32 ppid;
    u32 threads;
    s32 exit_code;
    u32 exit_how;       /* 0 unknown, 1 leader's exit(), 2 exit_group() */
    char comm[TASK_COMM];
};

struct sysstat {
    u64 calls;
    u64 errors;
    u64 total_ns;
    u64 min_ns;
    u64 max_ns;
    u64 faults;
    u64 fault_ns;
    u64 restarts;       /* re-entries after a signal (see record_call) */
    u64 hist[HIST_SLOTS];
};

struct faultstat {
    u64 user;
    u64 in_sys;
    u64 minor;
    u64 major;
    u64 timed;
    u64 incomplete;
    u64 user_ns;
    u64 sys_ns;
    u64 hist[HIST_SLOTS];
};

struct budget {
    u64 threads;
    u64 lifetime;
    u64 charge[NCHARGE];
};

struct irqstat {
    u64 count;
    u64 ns;
};

struct errno_key {
    u32 nr;
    u32 err;
};

struct stack_key {
    s32 kstack;
    u32 mode;           /* the thread's mode when sampled (enum mode) */
};

/* The thread running on a CPU (see the top): S_TRACED slots own the state of
 * a traced thread until it is switched out; S_UNTRACED ones say it has none. */
enum slot_state { S_EMPTY = 0, S_UNTRACED = 1, S_TRACED = 2 };

struct oncpu {
    u32 tid;
    u32 state;
    u64 gen;            /* the generation of gens[state] it was filled in */
    u64 regs;           /* the thread's user pt_regs, 0 until its first
                         * syscall here (see syscall_thread) */
    struct thread t;
};

struct gens {
    u64 untraced;
    u64 traced;
    u64 stopped;        /* the run has ended: count nothing, change nothing */
};

BPF_HASH(traced, u32, struct thread, MAX_THREADS);
BPF_PERCPU_ARRAY(oncpu, struct oncpu, 1);
BPF_ARRAY(gens, struct gens, 1);
BPF_HASH(procs, u32, struct proc, MAX_PROCS);
BPF_HASH(errnos, struct errno_key, u64, 4096);
BPF_PERCPU_ARRAY(sysstats, struct sysstat, MAX_SYSCALLS);
BPF_PERCPU_ARRAY(faultstats, struct faultstat, 1);
BPF_PERCPU_ARRAY(budgets, struct budget, 1);
BPF_PERCPU_ARRAY(irqstats, struct irqstat, NIRQKIND);
BPF_PERCPU_ARRAY(irqstart, u64, NIRQKIND);
BPF_HASH(irqdevs, u32, struct irqstat, 1024);
BPF_PERCPU_ARRAY(drops, u64, NDROP);
BPF_PERCPU_ARRAY(samples, u64, 1);
BPF_STACK_TRACE(stack_traces, STACK_ENTRIES);
BPF_HASH(stack_counts, struct stack_key, u64, STACK_ENTRIES);

static __always_inline void count_drop(u32 what)
{
    u64 *n = drops.lookup(&what);
    if (n)
        (*n)++;
}

/* Timeline event types (collectors/ebpf_timeline.py decodes them: keep in step);
 * defined always, since count_call names them with or without TIMELINE. */
enum tl_type { TL_SYSCALL = 0, TL_FAULT = 1, TL_IRQ = 2, TL_THREAD = 3, TL_UNFINISHED = 4,
               NTL };

#if TIMELINE
/* One event of the timeline (profiler/timeline.py's slices), in time units of
 * bpf_ktime_get_ns().  collectors/ebpf_timeline.py decodes it: keep in step. */

struct tl_event {
    u64 start;
    u64 dur;
    s64 value;          /* syscall: its return value; fault: 1 major; irq: device irq */
    u32 tid;
    u32 tgid;
    u32 type;
    s32 code;           /* syscall number; fault: 1 inside a syscall; irq: its kind */
};

#if TIMELINE_RINGBUF
BPF_RINGBUF_OUTPUT(tl_events, TIMELINE_PAGES);
#else
BPF_PERF_OUTPUT(tl_events);
#endif
BPF_PERCPU_ARRAY(tl_lost, u64, NTL);      /* ring buffer full: events lost */
BPF_PERCPU_ARRAY(tl_skipped, u64, NTL);   /* after user space stopped recording */
BPF_ARRAY(tl_off, u32, 1);                /* 1: user space stopped recording */

static __always_inline void tl_emit(void *ctx, u32 type, s32 code, u64 start, u64 dur,
                                    s64 value, u32 tgid)
{
    u32 zero = 0;
    u32 *off = tl_off.lookup(&zero);
    struct tl_event ev = {};
    u64 *n;

    if (off && *off && type != TL_THREAD) {     /* threads' lives: always */
        n = tl_skipped.lookup(&type);
        if (n)
            (*n)++;
        return;
    }
    ev.start = start;
    ev.dur = dur;
    ev.value = value;
    ev.tid = (u32)bpf_get_current_pid_tgid();
    ev.tgid = tgid;
    ev.type = type;
    ev.code = code;
#if TIMELINE_RINGBUF
    if (tl_events.ringbuf_output(&ev, sizeof(ev), 0)) {
#else
    if (tl_events.perf_submit(ctx, &ev, sizeof(ev))) {
#endif
        n = tl_lost.lookup(&type);
        if (n)
            (*n)++;
    }
}
#define TL_EMIT(...) tl_emit(__VA_ARGS__)
#else
#define TL_EMIT(...) do { } while (0)
#endif

/* log2 bucket as profiler.model.log2_bucket: 0 for 0, else bit length. */
static __always_inline u32 bucket(u64 v)
{
    u32 b = 0;
    if (v >= (1ULL << 32)) { v >>= 32; b += 32; }
    if (v >= (1ULL << 16)) { v >>= 16; b += 16; }
    if (v >= (1ULL << 8)) { v >>= 8; b += 8; }
    if (v >= (1ULL << 4)) { v >>= 4; b += 4; }
    if (v >= (1ULL << 2)) { v >>= 2; b += 2; }
    if (v >= (1ULL << 1)) { v >>= 1; b += 1; }
    return b + (u32)v;
}

static __always_inline void hist_add(u64 *hist, u64 v)
{
    u32 b = bucket(v);
    if (b >= HIST_SLOTS) {
        b = HIST_SLOTS - 1;
        count_drop(D_HIST_CLAMPED);
    }
    hist[b]++;
}

/* The generations, or 0 once the run has stopped. */
static __always_inline struct gens *running(void)
{
    u32 zero = 0;
    struct gens *g = gens.lookup(&zero);

    if (!g || g->stopped)
        return 0;
    return g;
}

static __always_inline struct thread *active_thread(u32 tid)
{
    struct thread *t;

    if (!running())
        return 0;
    t = traced.lookup(&tid);
    if (!t || t->phase != PH_ACTIVE)
        return 0;
    return t;
}

/* What a CPU's slot says of the thread it was filled for, in this generation:
 * SAYS_TRACED (its state is the slot's), SAYS_UNTRACED, or SAYS_NOTHING
 * (empty, or filled before threads were added or the run ended). */
enum says { SAYS_NOTHING = -1, SAYS_UNTRACED = 0, SAYS_TRACED = 1 };

static __always_inline int slot_says(struct oncpu *c, struct gens *g)
{
    if (c->state == S_TRACED && c->gen == g->traced)
        return SAYS_TRACED;
    if (c->state == S_UNTRACED && c->gen == g->untraced)
        return SAYS_UNTRACED;
    return SAYS_NOTHING;
}

/* This CPU's slot if it holds thread `tid`'s state (checked out), else 0. */
static __always_inline struct oncpu *slot_of(u32 tid)
{
    u32 zero = 0;
    struct oncpu *c = oncpu.lookup(&zero);
    struct gens *g = running();

    if (c && g && c->tid == tid && slot_says(c, g) == SAYS_TRACED)
        return c;
    return 0;
}

/* The state of thread `tid`, which is running here, in any phase; 0 if it is
 * not traced.  Its CPU's slot answers unless stale or empty, else `traced`. */
static __always_inline struct thread *lookup_current(u32 tid)
{
    u32 zero = 0;
    struct oncpu *c = oncpu.lookup(&zero);
    struct gens *g = running();

    int says;

    if (!g)
        return 0;
    if (c && c->tid == tid) {
        says = slot_says(c, g);
        if (says != SAYS_NOTHING)
            return says == SAYS_TRACED ? &c->t : 0;
    }
    return traced.lookup(&tid);
}

static __always_inline struct thread *current_thread(void)
{
    struct thread *t = lookup_current((u32)bpf_get_current_pid_tgid());

    if (!t || t->phase != PH_ACTIVE)
        return 0;
    return t;
}

#if RAW_SYSCALLS
/* lookup_current() for the syscall probes, which are the hot path.  A raw
 * syscall tracepoint's first argument is the thread's user pt_regs, which sit
 * at the top of its kernel stack: unique among live threads and fixed for
 * life.  Once the slot has learnt it, matching it identifies the thread
 * without the helper call that fetches its tid (~8 ns a probe here).
 * A missed sched_switch (a regular tracepoint's program is skipped while
 * another BPF program or a bpf() map update is active on this CPU) leaves the
 * slot describing another thread, whose pt_regs differ, so the slow path by
 * tid takes over.  What this cannot tell apart: a slot left stale by missed
 * switches for a thread that has since exited elsewhere, and a new thread
 * given its freed kernel stack that runs here before the next switch is seen.
 * That needs overlapping bpf() calls preempted on this CPU, and its cost is
 * a few calls charged to the wrong thread; the tid check it replaces could be
 * fooled only by a reused tid. */
static __always_inline struct thread *syscall_thread(u64 regs)
{
    u32 zero = 0;
    struct oncpu *c = oncpu.lookup(&zero);
    struct gens *g = running();
    int says;
    u32 tid;

    if (!c || !g)
        return 0;
    says = slot_says(c, g);
    if (says != SAYS_NOTHING && c->regs == regs)
        return says == SAYS_TRACED ? &c->t : 0;
    tid = bpf_get_current_pid_tgid();
    if (says != SAYS_NOTHING && c->tid == tid) {
        c->regs = regs;     /* learnt: the next syscall here skips the tid */
        return says == SAYS_TRACED ? &c->t : 0;
    }
    return traced.lookup(&tid);
}
#endif

/* Thread `tid` leaves the traced set: forget its slot here, if any. */
static __always_inline void drop_slot(u32 tid)
{
    struct oncpu *c = slot_of(tid);

    if (c) {
        c->state = S_EMPTY;
        c->regs = 0;
    }
}

/* The span since the thread's previous event, which now becomes `now`.
 * Atomically: an interrupt's probe can run in the middle of a syscall probe
 * of the same thread and charge in between; every nanosecond is then still
 * charged once (the outer span comes out short by what the inner one took,
 * and its next span makes up for the difference), so charges add up. */
static __always_inline u64 claim(struct thread *t, u64 now)
{
    return now - __sync_lock_test_and_set(&t->last, now);
}

/* Add a claimed span to one of the thread's sums (a charge or an open fault's
 * pend_cpu/pend_off).  Atomically too, for the same nesting: the probes of the
 * interrupts (raw tracepoints, which may run inside another BPF program) fire
 * on the thread's CPU in the middle of its syscall, fault and exit probes,
 * and charge the same sums (C_USER, C_SYS_CPU, C_IRQ, pend_cpu).  A plain
 * `+=` there is a load and a store: an interrupt taken between them had its
 * charge overwritten by the outer store, and the books came out short by the
 * span it charged (the "budget bookkeeping differs" note, seen in most runs of
 * 64 threads x 10000 getppid on 2 CPUs: a few times a run, by a few to tens
 * of microseconds, the span from the outer probe's claim to the interrupt's,
 * as long as a virtual CPU was held up there).  The locked add costs little:
 * sys_enter/sys_exit measured 116/97 ns a run against 114/96 ns with plain
 * adds (kernel.bpf_stats_enabled, medians of 5 runs of 300000 getppid). */
static __always_inline void add_span(u64 *sum, u64 d)
{
    __sync_fetch_and_add(sum, d);
}

/* Empty an open fault's pending sum, atomically against the same nesting. */
static __always_inline u64 take_pending(u64 *pending)
{
    return __sync_lock_test_and_set(pending, 0);
}

/* Charge the span since the thread's previous event to the state it was in. */
static __always_inline void charge(struct thread *t, u64 now)
{
    u64 d = claim(t, now);
    u32 c = C_UNKNOWN;

    if (t->run == R_ONCPU) {
        if (t->irq_depth) {
            c = C_IRQ;
        } else if (t->mode == M_USER) {
            c = C_USER;
        } else if (t->mode == M_SYSCALL) {
            c = C_SYS_CPU;
        } else if (t->mode == M_FAULT) {
            add_span(&t->pend_cpu, d);
            return;
        }
    } else if (t->run == R_BLOCKED) {
        if (t->mode == M_SYSCALL) {
            c = C_SYS_BLOCKED;
        } else if (t->mode == M_FAULT) {
            add_span(&t->pend_off, d);
            return;
        }
    } else if (t->run == R_QUEUED) {
        c = C_RUNQ;
    }
    if (c < NCHARGE)
        add_span(&t->charge[c], d);
}

/* An event contradicts the thread's state (an earlier event was missed):
 * the span since its last event is of unknown state. */
static __always_inline void charge_checked(struct thread *t, u64 now, int consistent)
{
    if (consistent) {
        charge(t, now);
        return;
    }
    add_span(&t->charge[C_UNKNOWN], claim(t, now));
    count_drop(D_INCONSISTENT);
}

/* The thread is running this event: a thread adopted mid-life (attach) in an
 * unknown scheduling state is now known to be on a CPU. */
static __always_inline void seen_on_cpu(struct thread *t)
{
    if (t->run == R_UNKNOWN)
        t->run = R_ONCPU;
}

/* An open fault ended without a completion event: its time is unknown. */
static __always_inline void abandon_fault(struct thread *t)
{
    u32 zero = 0;
    struct faultstat *fs = faultstats.lookup(&zero);

    if (fs)
        fs->incomplete++;
    t->fault_ts = 0;
    /* the mode first: an interrupt charging from here on no longer adds to
     * the pending sums, which are then emptied for good */
    t->mode = t->fault_in_sys ? M_SYSCALL : M_USER;
    add_span(&t->charge[C_UNKNOWN], take_pending(&t->pend_cpu) + take_pending(&t->pend_off));
}

/* --per-process (PER_TASK 1: keyed by tgid) and --per-thread (2: by tid):
 * each task's own calls of each syscall.  Without them this is compiled out. */
#ifndef PER_TASK
#define PER_TASK 0
#endif
#if PER_TASK
struct task_key {
    u32 id;
    u32 nr;
};

struct task_calls {
    u64 calls;
    u64 errors;
    u64 total_ns;
    u32 tgid;
    u32 pad;
    char comm[TASK_COMM];   /* the thread's name at its first call of nr */
};

BPF_HASH(taskcalls, struct task_key, struct task_calls, PER_TASK_ENTRIES);

static __always_inline void count_task(struct thread *t, u32 nr, u64 d, int failed)
{
    struct task_key key = {.id = PER_TASK == 2 ? (u32)bpf_get_current_pid_tgid() : t->tgid,
                           .nr = nr};
    struct task_calls *c = taskcalls.lookup(&key);

    if (!c) {
        struct task_calls fresh = {.tgid = t->tgid};

        bpf_get_current_comm(&fresh.comm, sizeof(fresh.comm));
        taskcalls.insert(&key, &fresh);
        c = taskcalls.lookup(&key);
        if (!c) {
            count_drop(D_TASKS_FULL);
            return;
        }
    }
    __sync_fetch_and_add(&c->calls, 1);
    __sync_fetch_and_add(&c->total_ns, d);
    if (failed)
        __sync_fetch_and_add(&c->errors, 1);
}
#define COUNT_TASK(t, nr, d, failed) count_task(t, nr, d, failed)
#else
#define COUNT_TASK(t, nr, d, failed)
#endif

/* One call of syscall nr that took d ns and returned ret; with --timeline,
 * its slice: `type` (TL_SYSCALL, or TL_UNFINISHED for a call its thread's
 * exit cut short) from `start` for `span` ns (a restarted call's slice is its
 * last attempt).  Every counted call has its slice, so the timeline's slices
 * per syscall equal the counts. */
#if TRACE_SET
BPF_ARRAY(trace_set, u8, MAX_SYSCALLS);     /* 1: syscall nr is in -e trace=SET */
#endif

static __always_inline void count_call(void *ctx, struct thread *t, s32 nr, u64 d, long ret,
                                       u32 type, u64 start, u64 span)
{
#if TRACE_SET
    {
        u32 in_key = nr;
        u8 *in_set = trace_set.lookup(&in_key);

        if (!in_set || !*in_set)
            return;     /* not traced: no count, no time, no slice */
    }
#endif
    TL_EMIT(ctx, type, nr, start, span, ret, t->tgid);
    u32 key = nr;
    struct sysstat *s = sysstats.lookup(&key);

    t->syscalls++;
    t->syscall_ns += d;
    COUNT_TASK(t, key, d, ret < 0 && ret >= -MAX_ERRNO && nr != NR_RT_SIGRETURN);
    if (!s) {
        count_drop(D_SYSCALL_RANGE);
        return;
    }
    s->calls++;
    s->total_ns += d;
    if (s->calls == 1 || d < s->min_ns)
        s->min_ns = d;
    if (d > s->max_ns)
        s->max_ns = d;
    hist_add(s->hist, d);
    /* rt_sigreturn returns the restored frame's rax, not an error of its own */
    if (ret < 0 && ret >= -MAX_ERRNO && nr != NR_RT_SIGRETURN) {
        struct errno_key ek = {.nr = key, .err = (u32)-ret};
        u64 one = 1;
        u64 *n;

        s->errors++;
        t->sys_errors++;
        n = errnos.lookup(&ek);
        if (n)
            __sync_fetch_and_add(n, 1);
        else if (errnos.insert(&ek, &one))
            count_drop(D_ERRNOS_FULL);
    }
}

static __always_inline void count_restart(u32 key)
{
    struct sysstat *s = sysstats.lookup(&key);

    if (s)
        s->restarts++;
}

/* The kernel's restart codes (include/linux/errno.h); ENOIOCTLCMD (515)
 * between them never leaves the kernel. */
#define ERESTARTSYS 512
#define ERESTART_RESTARTBLOCK 516
#define EINTR 4

/* A syscall exit: nr returned ret after d ns.  Counts what the program called
 * (docs/schema.md, syscalls.NAME): an exit with a restart code is a signal's
 * interruption, not a call; it is kept as the thread's interrupted attempt
 * (intr_key, intr_ns) until the kernel's choice shows at a later exit:
 *   - the same syscall or restart_syscall: the kernel re-entered it; one call
 *     of it (restart_syscall counts as the call it resumes), timed with all its
 *     attempts, and a restart;
 *   - rt_sigreturn returning -EINTR: a handler ran and the kernel made the
 *     call fail with EINTR: one call with that error, timed as its attempt;
 *   - the thread's exit: one call (sched_process_exit).
 * The signal handler's calls in between leave it pending; a second
 * interruption in that handler replaces it.  ptrace_loop.py does the same. */
static __always_inline void record_call(void *ctx, struct thread *t, s32 nr, u64 d, long ret,
                                        u32 type, u64 start)
{
    u32 pending = t->intr_key;

    if (ret >= -ERESTART_RESTARTBLOCK && ret <= -ERESTARTSYS && nr != NR_RT_SIGRETURN) {
        if (pending && (pending == (u32)nr + 1 || nr == NR_RESTART_SYSCALL)) {
            count_restart(pending - 1);     /* re-entered, interrupted again */
            t->intr_ns += d;
        } else {
            t->intr_key = (u32)nr + 1;
            t->intr_ns = d;
            t->intr_start = start;
        }
        return;
    }
    if (pending) {
        if (pending == (u32)nr + 1 || nr == NR_RESTART_SYSCALL) {
            t->intr_key = 0;
            count_restart(pending - 1);
            count_call(ctx, t, pending - 1, d + t->intr_ns, ret, type, start, d);
            return;
        }
        if (nr == NR_RT_SIGRETURN && ret == -EINTR) {
            t->intr_key = 0;
            count_call(ctx, t, pending - 1, t->intr_ns, -EINTR, TL_SYSCALL, t->intr_start,
                       t->intr_ns);
        }
    }
    count_call(ctx, t, nr, d, ret, type, start, d);
}

static __always_inline void note_exit_code(s32 nr, u64 code)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tgid = pid_tgid >> 32;
    struct proc *p = procs.lookup(&tgid);

    if (!p)
        return;
    if (nr == NR_EXIT_GROUP) {
        p->exit_code = code & 0xff;
        p->exit_how = 2;
    } else if ((u32)pid_tgid == tgid && p->exit_how != 2) {
        p->exit_code = code & 0xff;
        p->exit_how = 1;
    }
}

/* ------------------------------------------------------------- syscalls */
/* t: the calling thread's state in any phase, 0 if it is not traced */
static __always_inline int on_sys_enter(struct thread *t, long id, u64 arg0_or_regs, int raw)
{
    u64 now;

    if (!t)
        return 0;
    now = bpf_ktime_get_ns();
    if (t->phase != PH_ACTIVE) {
        /* armed: the command starts counting at its own execve */
        if (t->phase != PH_ARMED || (id != NR_EXECVE && id != NR_EXECVEAT))
            return 0;
        t->phase = PH_ACTIVE;
        t->start = now;
        t->last = now;
        t->run = R_ONCPU;
        t->mode = M_USER;
    }
    charge_checked(t, now, !(t->mode == M_SYSCALL || (t->mode == M_FAULT && t->fault_in_sys)));
    seen_on_cpu(t);
    if (t->mode == M_FAULT)
        abandon_fault(t);
    t->mode = M_SYSCALL;
    t->sys_nr = id;
    t->sys_start = now;
    if (id == NR_EXIT_GROUP || id == NR_EXIT) {
        u64 code = arg0_or_regs;
        if (raw) {
            struct pt_regs *regs = (struct pt_regs *)arg0_or_regs;
            bpf_probe_read_kernel(&code, sizeof(code), &PT_REGS_PARM1(regs));
        }
        note_exit_code(id, code);
    }
    return 0;
}

static __always_inline int on_sys_exit(void *ctx, struct thread *t, long ret)
{
    u64 now;
    s32 nr;

    if (!t || t->phase != PH_ACTIVE)
        return 0;
    now = bpf_ktime_get_ns();
    charge(t, now);
    seen_on_cpu(t);
    if (t->mode == M_FAULT)
        abandon_fault(t);
    t->mode = M_USER;
    nr = t->sys_nr;
    if (nr < 0)
        return 0;       /* a new thread returning from clone, or attach */
    t->sys_nr = -1;
    record_call(ctx, t, nr, now - t->sys_start, ret, TL_SYSCALL, t->sys_start);
    return 0;
}

#if SYSCALL_TPS
/* The records of syscalls:sys_enter_NAME and sys_exit_NAME (tracefs' format):
 * one function for every NAME's entry and one for every exit. */
struct sc_enter_record {
    u64 common;
    s32 nr;
    u32 pad;
    u64 args[6];
};

struct sc_exit_record {
    u64 common;
    s32 nr;
    u32 pad;
    s64 ret;
};

/* Reads no argument: the kernel refuses a program reading past a record's end
 * (sys_enter_fork has none). */
int on_sc_enter(struct sc_enter_record *args)
{
    return on_sys_enter(lookup_current((u32)bpf_get_current_pid_tgid()), args->nr, 0, 0);
}

/* exit and exit_group: their first argument is the exit code */
int on_sc_enter_exit(struct sc_enter_record *args)
{
    return on_sys_enter(lookup_current((u32)bpf_get_current_pid_tgid()), args->nr,
                        args->args[0], 0);
}

int on_sc_exit(struct sc_exit_record *args)
{
    return on_sys_exit(args, current_thread(), args->ret);
}
#elif RAW_SYSCALLS
RAW_TRACEPOINT_PROBE(sys_enter)
{
    return on_sys_enter(syscall_thread(ctx->args[0]), (long)ctx->args[1], ctx->args[0], 1);
}

RAW_TRACEPOINT_PROBE(sys_exit)
{
    return on_sys_exit(ctx, syscall_thread(ctx->args[0]), (long)ctx->args[1]);
}
#else
TRACEPOINT_PROBE(raw_syscalls, sys_enter)
{
    return on_sys_enter(lookup_current((u32)bpf_get_current_pid_tgid()), args->id,
                        args->args[0], 0);
}

TRACEPOINT_PROBE(raw_syscalls, sys_exit)
{
    return on_sys_exit(args, current_thread(), args->ret);
}
#endif

/* --------------------------------------------------- threads, processes */
TRACEPOINT_PROBE(task, task_newtask)
{
    u64 parent = bpf_get_current_pid_tgid();
    u32 ptid = parent;
    u32 ptgid = parent >> 32;
    u32 tid = args->pid;
    int is_thread = (args->clone_flags & CLONE_THREAD_FLAG) != 0;
    struct thread *p = lookup_current(ptid);
    struct thread t = {};

    if (!p || p->phase != PH_ACTIVE)
        return 0;
#if !FOLLOW
    if (!is_thread)
        return 0;
#endif
    t.phase = PH_NEW;
    t.mode = M_SYSCALL;     /* it starts life returning from clone */
    t.sys_nr = -1;
    t.tgid = is_thread ? ptgid : tid;
    if (traced.update(&tid, &t)) {
        count_drop(D_THREADS_FULL);
        return 0;
    }
    if (is_thread) {
        struct proc *pr = procs.lookup(&ptgid);
        if (pr)
            __sync_fetch_and_add(&pr->threads, 1);
    } else {
        struct proc pr = {};
        pr.ppid = ptgid;
        pr.threads = 1;
        bpf_probe_read_kernel(&pr.comm, sizeof(pr.comm), args->comm);
        if (procs.update(&tid, &pr))
            count_drop(D_PROCS_FULL);
    }
    return 0;
}

/* A new thread's life starts when it first becomes runnable. */
TRACEPOINT_PROBE(sched, sched_wakeup_new)
{
    u32 tid = args->pid;
    struct thread *t;
    u64 now;

    if (!running())
        return 0;
    t = traced.lookup(&tid);
    if (!t || t->phase != PH_NEW)
        return 0;
    now = bpf_ktime_get_ns();
    t->phase = PH_ACTIVE;
    t->start = now;
    t->last = now;
    t->run = R_QUEUED;
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tgid = pid_tgid >> 32;
    u32 old = args->old_pid;
    u32 tid = args->pid;
    struct thread *t;
    struct oncpu *c;
    struct proc *p;

    if (!running())
        return 0;
    p = procs.lookup(&tgid);
    if (p)
        bpf_get_current_comm(&p->comm, sizeof(p->comm));
    if (old == tid)
        return 0;
    /* a non-leader thread exec'd and took over the leader's tid */
    c = slot_of(old);
    t = c ? &c->t : traced.lookup(&old);
    if (!t)
        return 0;
    if (traced.update(&tid, t)) {
        count_drop(D_THREADS_FULL);
        if (c) {
            c->state = S_EMPTY;
            c->regs = 0;
        }
    } else if (c) {
        c->tid = tid;       /* same thread, same kernel stack: regs still hold */
    }
    traced.delete(&old);
    return 0;
}

static __always_inline void fold_into_budget(struct thread *t, u64 now)
{
    u32 zero = 0;
    struct budget *b = budgets.lookup(&zero);

    if (!b)
        return;
    b->threads++;
    b->lifetime += now - t->start;
#pragma unroll
    for (int i = 0; i < NCHARGE; i++)
        b->charge[i] += t->charge[i];
}

static __always_inline void fold_into_proc(struct thread *t)
{
    u32 tgid = t->tgid;
    struct proc *p = procs.lookup(&tgid);

    if (!p)
        return;
    __sync_fetch_and_add(&p->syscalls, t->syscalls);
    __sync_fetch_and_add(&p->sys_errors, t->sys_errors);
    __sync_fetch_and_add(&p->syscall_ns, t->syscall_ns);
    __sync_fetch_and_add(&p->minflt, t->minflt);
    __sync_fetch_and_add(&p->majflt, t->majflt);
    __sync_fetch_and_add(&p->fault_ns, t->fault_ns);
    __sync_fetch_and_add(&p->user_ns, t->charge[C_USER]);
    __sync_fetch_and_add(&p->sys_ns, t->charge[C_SYS_CPU] + t->charge[C_FAULT_USER_CPU]
                                     + t->charge[C_FAULT_SYS_CPU]);
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u32 tid = bpf_get_current_pid_tgid();
    struct thread *t = lookup_current(tid);
    u64 now;

    if (!t)
        return 0;
    if (t->phase != PH_ACTIVE) {
        drop_slot(tid);
        traced.delete(&tid);
        return 0;
    }
    /* First shut out the interrupt probes: one that charged after the final
     * charge below would add its span to the charges but not the lifetime. */
    t->phase = PH_EXITING;
    now = bpf_ktime_get_ns();
    charge(t, now);
    if (t->mode == M_FAULT)
        abandon_fault(t);
    /* exit(), exit_group() and calls cut short by a fatal signal */
    if (t->sys_nr >= 0)
        record_call(args, t, t->sys_nr, now - t->sys_start, 0, TL_UNFINISHED, t->sys_start);
    if (t->intr_key) {      /* an interrupted call never resumed: a call */
        count_call(args, t, t->intr_key - 1, t->intr_ns, 0, TL_UNFINISHED, t->intr_start,
                   t->intr_ns);
        t->intr_key = 0;
    }
    TL_EMIT(args, TL_THREAD, 0, t->start, now - t->start, 0, t->tgid);
    fold_into_budget(t, now);
    fold_into_proc(t);
    drop_slot(tid);
    traced.delete(&tid);
    return 0;
}

/* ------------------------------------------------------------ off-CPU */
TRACEPOINT_PROBE(sched, sched_switch)
{
    u64 now;
    u32 prev = args->prev_pid;
    u32 next = args->next_pid;
    u32 zero = 0;
    struct oncpu *c = oncpu.lookup(&zero);
    struct gens *g = running();
    struct oncpu *out = slot_of(prev);
    struct thread *t;

    if (!c || !g)
        return 0;       /* stopped: the slots keep the end's state for user space */
    now = bpf_ktime_get_ns();
    t = out ? &out->t : traced.lookup(&prev);
    if (t && t->phase == PH_ACTIVE) {
        charge_checked(t, now, t->run == R_ONCPU || t->run == R_UNKNOWN);
        if (t->irq_depth) {
            t->irq_depth = 0;
            count_drop(D_IRQ_UNBALANCED);
        }
        /* low 8 bits: the task state letters; none set means runnable */
        t->run = (args->prev_state & 0xff) ? R_BLOCKED : R_QUEUED;
    }
    if (out) {          /* check the state in again (unless gone meanwhile) */
        struct thread *home = traced.lookup(&prev);
        if (home)
            *home = out->t;
    }
    c->state = S_EMPTY;
    t = traced.lookup(&next);
    if (t && t->phase == PH_ACTIVE) {
        charge_checked(t, now, t->run != R_ONCPU);
        t->run = R_ONCPU;
    }
    /* check out: the copy in `traced` stays as of now (run: on CPU) */
    c->tid = next;
    c->regs = 0;
    if (t) {
        c->t = *t;
        c->gen = g->traced;
        c->state = S_TRACED;
    } else {
        c->gen = g->untraced;
        c->state = S_UNTRACED;
    }
    return 0;
}

TRACEPOINT_PROBE(sched, sched_wakeup)
{
    struct thread *t = active_thread(args->pid);

    if (t && t->run == R_BLOCKED) {
        charge(t, bpf_ktime_get_ns());
        t->run = R_QUEUED;
    }
    return 0;
}

/* ------------------------------------------------------------- faults */
static __always_inline void fault_entry(struct thread *t, u64 now)
{
    u32 zero = 0;
    struct faultstat *fs = faultstats.lookup(&zero);
    u8 in_sys;

    charge(t, now);
    seen_on_cpu(t);
    if (t->mode == M_FAULT)
        abandon_fault(t);
    in_sys = t->mode == M_SYSCALL;
    if (fs) {
        if (in_sys)
            fs->in_sys++;
        else
            fs->user++;
    }
    if (in_sys && t->sys_nr >= 0) {
        u32 key = t->sys_nr;
        struct sysstat *s = sysstats.lookup(&key);
        if (s)
            s->faults++;
    }
#if FAULT_TIMED
    t->mode = M_FAULT;
    t->fault_in_sys = in_sys;
    t->fault_ts = 0;
#endif
}

#if FAULT_ENTRY_TP
/* exceptions:page_fault_user and page_fault_kernel, attached by hand (raw or
 * regular tracepoints alike: only the fact of the fault matters here) */
int on_fault_entry(void *ctx)
{
    struct thread *t = current_thread();
    if (t)
        fault_entry(t, bpf_ktime_get_ns());
    return 0;
}
#endif

#if FAULT_TIMED || !FAULT_ENTRY_TP
/* software event page-faults: do_user_addr_fault() has started */
int on_fault_start(void *ctx)
{
    struct thread *t = current_thread();
    u64 now;

    if (!t)
        return 0;
    now = bpf_ktime_get_ns();
#if !FAULT_ENTRY_TP
    fault_entry(t, now);
#endif
    if (t->mode == M_FAULT)
        t->fault_ts = now;
    return 0;
}
#endif

#if FAULT_TIMED
/* software events minor-faults / major-faults: handle_mm_fault() accounted it */
static __always_inline int fault_done(void *ctx, int major)
{
    u32 zero = 0;
    struct thread *t = current_thread();
    struct faultstat *fs;
    u64 now, d;

    if (!t)
        return 0;
    fs = faultstats.lookup(&zero);
    if (!fs)
        return 0;
    if (major) {
        fs->major++;
        t->majflt++;
    } else {
        fs->minor++;
        t->minflt++;
    }
    if (t->mode != M_FAULT)
        return 0;
    now = bpf_ktime_get_ns();
    charge(t, now);
    /* the mode first, as in abandon_fault() */
    t->mode = t->fault_in_sys ? M_SYSCALL : M_USER;
    if (t->fault_in_sys) {
        add_span(&t->charge[C_FAULT_SYS_CPU], take_pending(&t->pend_cpu));
        add_span(&t->charge[C_FAULT_SYS_OFF], take_pending(&t->pend_off));
    } else {
        add_span(&t->charge[C_FAULT_USER_CPU], take_pending(&t->pend_cpu));
        add_span(&t->charge[C_FAULT_USER_OFF], take_pending(&t->pend_off));
    }
    if (!t->fault_ts)
        return 0;
    d = now - t->fault_ts;
    TL_EMIT(ctx, TL_FAULT, t->fault_in_sys, t->fault_ts, d, major, t->tgid);
    t->fault_ts = 0;
    fs->timed++;
    hist_add(fs->hist, d);
    t->fault_ns += d;
    if (t->fault_in_sys) {
        fs->sys_ns += d;
        if (t->sys_nr >= 0) {
            u32 key = t->sys_nr;
            struct sysstat *s = sysstats.lookup(&key);
            if (s)
                s->fault_ns += d;
        }
    } else {
        fs->user_ns += d;
    }
    return 0;
}

int on_fault_minor(void *ctx)
{
    return fault_done(ctx, 0);
}

int on_fault_major(void *ctx)
{
    return fault_done(ctx, 1);
}
#endif

/* ---------------------------------------------------------- interrupts */
static __always_inline int irq_enter(u32 kind)
{
    struct thread *t = current_thread();
    u64 now;
    u64 *start;

    if (!t || t->run != R_ONCPU)
        return 0;
    now = bpf_ktime_get_ns();
    start = irqstart.lookup(&kind);
    if (start)
        *start = now;
    if (t->irq_depth == 0)
        charge(t, now);
    if (t->irq_depth < MAX_IRQ_DEPTH)
        t->irq_depth++;
    return 0;
}

/* The interrupt's duration goes to *took; returns 0 if it was not counted. */
static __always_inline int irq_leave_timed(void *ctx, u32 kind, u64 *took, u64 *took_start)
{
    struct thread *t = current_thread();
    struct irqstat *st;
    int counted = 0;
    u64 now;
    u64 *start;

    if (!t || !t->irq_depth)
        return 0;
    now = bpf_ktime_get_ns();
    start = irqstart.lookup(&kind);
    st = irqstats.lookup(&kind);
    if (start && *start && st) {
        *took = now - *start;
        st->count++;
        st->ns += *took;
#if TIMELINE
        if (kind != IRQ_HANDLER)    /* device irqs: in irq_handler_done, with the irq */
            tl_emit(ctx, TL_IRQ, kind, *start, *took, -1, t->tgid);
        else
            *took_start = *start;
#endif
        *start = 0;
        counted = 1;
    }
    if (t->irq_depth == 1)
        charge(t, now);
    t->irq_depth--;
    return counted;
}

static __always_inline int irq_leave(void *ctx, u32 kind)
{
    u64 took = 0, took_start = 0;
    irq_leave_timed(ctx, kind, &took, &took_start);
    return 0;
}

/* Every x86 vector's entry and exit tracepoint runs one of these two programs
 * (ebpf.py attaches them to each irq_vectors:<name>_entry/_exit the plan
 * lists; VECTORS is 1 when it lists any).  One shared pair instead of one per
 * vector: each program carries its own copy of the inlined helpers, and eight
 * pairs were a sixth of the compile.  The tracepoint's one argument,
 * TP_PROTO(int vector), tells the kind: the x86 vector numbers
 * (arch/x86/include/asm/irq_vectors.h, passed as VECNR_<name> by the plan)
 * are fixed for each tracepoint but the spurious interrupt's, which passes
 * the vector that came in; any number not of another kind is that one. */
#if VECTORS
static __always_inline u32 vector_kind(u32 vector)
{
    switch (vector) {
    case VECNR_local_timer: return 0;
    case VECNR_reschedule: return 1;
    case VECNR_call_function: return 2;
    case VECNR_call_function_single: return 3;
    case VECNR_irq_work: return 4;
    case VECNR_x86_platform_ipi: return 5;
    case VECNR_thermal_apic: return 6;
    case VECNR_error_apic: return 7;
    case VECNR_deferred_error_apic: return 9;
    default: return 8;      /* spurious_apic */
    }
}

#if RAW_EVENTS
/* raw tracepoints: TP_PROTO's arguments */
static __always_inline u32 vector_number(void *ctx)
{
    return (u32)((struct bpf_raw_tracepoint_args *)ctx)->args[0];
}
#else
/* regular tracepoints: tracefs' record (common fields, then int vector) */
struct vector_record {
    u64 common;
    s32 vector;
};

static __always_inline u32 vector_number(void *ctx)
{
    return (u32)((struct vector_record *)ctx)->vector;
}
#endif

int vec_in(void *ctx)
{
    return irq_enter(vector_kind(vector_number(ctx)));
}

int vec_out(void *ctx)
{
    return irq_leave(ctx, vector_kind(vector_number(ctx)));
}
#endif

static __always_inline int irq_handler_done(void *ctx, u32 irq)
{
    struct irqstat fresh = {};
    struct irqstat *st;
    u64 took = 0, took_start = 0;

    if (!irq_leave_timed(ctx, IRQ_HANDLER, &took, &took_start))
        return 0;
#if TIMELINE
    {
        struct thread *t = current_thread();
        if (t)
            tl_emit(ctx, TL_IRQ, IRQ_HANDLER, took_start, took, irq, t->tgid);
    }
#endif
    st = irqdevs.lookup_or_try_init(&irq, &fresh);
    if (st) {
        __sync_fetch_and_add(&st->count, 1);
        __sync_fetch_and_add(&st->ns, took);
    }
    return 0;
}

static __always_inline int softirq_in(u32 vec)
{
    return vec < 10 ? irq_enter(IRQ_SOFTIRQ + vec) : 0;
}

static __always_inline int softirq_out(void *ctx, u32 vec)
{
    return vec < 10 ? irq_leave(ctx, IRQ_SOFTIRQ + vec) : 0;
}

#if RAW_EVENTS
/* Attached by hand as raw tracepoints; the arguments are TP_PROTO's
 * (include/trace/events/irq.h): irq_handler_entry(int irq, struct irqaction *),
 * irq_handler_exit(int irq, struct irqaction *, int ret),
 * softirq_entry/softirq_exit(unsigned int vec_nr).  Only scalars are read:
 * struct layouts of the compile-time headers need not match this kernel's.
 * The irq's name comes from user space (ebpf_read.irq_names). */
int on_irq_entry(struct bpf_raw_tracepoint_args *ctx)
{
    return irq_enter(IRQ_HANDLER);
}

int on_irq_exit(struct bpf_raw_tracepoint_args *ctx)
{
    return irq_handler_done(ctx, (u32)ctx->args[0]);
}

int on_softirq_entry(struct bpf_raw_tracepoint_args *ctx)
{
    return softirq_in((u32)ctx->args[0]);
}

int on_softirq_exit(struct bpf_raw_tracepoint_args *ctx)
{
    return softirq_out(ctx, (u32)ctx->args[0]);
}
#else
TRACEPOINT_PROBE(irq, irq_handler_entry)
{
    return irq_enter(IRQ_HANDLER);
}

TRACEPOINT_PROBE(irq, irq_handler_exit)
{
    return irq_handler_done(args, args->irq);
}

TRACEPOINT_PROBE(irq, softirq_entry)
{
    return softirq_in(args->vec);
}

TRACEPOINT_PROBE(irq, softirq_exit)
{
    return softirq_out(args, args->vec);
}
#endif

/* ------------------------------------------------------------- stacks */
#if STACK_FILTER
int on_sample(void *ctx)
{
    struct thread *t = current_thread();
    struct stack_key key = {};
    u32 zero = 0;
    u64 one = 1;
    u64 *n;

    if (!t)
        return 0;
    n = samples.lookup(&zero);
    if (n)
        (*n)++;
#if STACK_FILTER == 1
    if (t->mode != M_FAULT)
        return 0;
#endif
    key.mode = t->mode;
    key.kstack = stack_traces.get_stackid(ctx, 0);
    if (key.kstack < 0) {
        if (key.kstack != -14)  /* -EFAULT: sampled in user mode */
            count_drop(D_STACK_LOST);
        return 0;
    }
    n = stack_counts.lookup(&key);
    if (n)
        __sync_fetch_and_add(n, 1);
    else if (stack_counts.insert(&key, &one))
        count_drop(D_STACK_COUNTS_FULL);
    return 0;
}
#endif
