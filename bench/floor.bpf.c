/*
 * The least an exact per-syscall timer can cost on this kernel: a raw
 * tracepoint program on each side of every syscall that does nothing but
 * read the clock.  bench/run.py times the command under it, in the same run
 * as the untraced command and stprof, so stprof's overhead can be read
 * against what no in-kernel timer of every call could avoid here.
 */
BPF_PERCPU_ARRAY(entered, u64, 1);

RAW_TRACEPOINT_PROBE(sys_enter)
{
    u32 zero = 0;
    u64 *ts = entered.lookup(&zero);

    if (ts)
        *ts = bpf_ktime_get_ns();
    return 0;
}

RAW_TRACEPOINT_PROBE(sys_exit)
{
    u32 zero = 0;
    u64 *ts = entered.lookup(&zero);

    if (ts)
        *ts = bpf_ktime_get_ns() - *ts;
    return 0;
}
