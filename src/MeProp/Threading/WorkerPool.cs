using System.Diagnostics;
using System.Runtime.ExceptionServices;

namespace MeProp.Threading;

/// <summary>
/// A fixed set of worker threads that run numbered tasks. Task t always runs on worker
/// t % ThreadCount (a fixed partition), and every caller splits its work into tasks that write
/// disjoint outputs in a fixed order, so results never depend on timing. The calling thread is
/// worker 0, so a pool of one thread runs everything inline. Nothing is allocated per run: the
/// body is a function pointer and its arguments a pointer to a caller-owned struct.
/// A training step makes dozens of short runs, so workers spin on a generation counter for a while
/// before they block; an idle pool costs no CPU.
/// </summary>
public sealed unsafe class WorkerPool : IDisposable
{
    /// <summary>
    /// 2 ms of spinning before blocking: in a VM a sleeping worker can take milliseconds to wake, and with
    /// 0.5 ms workers slept 77 times in a batch-10 bench of 2 x 480 steps (20 times with 2 ms); an idle pool
    /// spins this long once, then sleeps.
    /// </summary>
    private static readonly long SpinTicks = Stopwatch.Frequency / 500;

    private readonly Thread[] _threads;
    /// <summary>Sleeping workers wait on this monitor for a new generation (or the pool's end).</summary>
    private readonly object _sleep = new();
    private delegate*<void*, int, void> _body;
    private void* _args;
    private int _taskCount;
    private int _generation;
    private int _pending;
    private int _sleepers;
    private long _naps;
    private volatile bool _stopping;
    /// <summary>
    /// <see cref="Idle"/>, <see cref="Running"/> (a second Run, from a task or another thread, is refused) or
    /// <see cref="Disposed"/>; Dispose takes the pool from Idle only, so it never stops the workers under a run.
    /// </summary>
    private int _state;
    private const int Idle = 0, Running = 1, Disposed = 2;
    /// <summary>Each worker's exception in the current run (slot 0 the caller's); cleared after a run that had one.</summary>
    private readonly Exception?[] _failures;
    private volatile bool _failed;

    /// <summary>Creates a pool of <paramref name="threadCount"/> workers (the caller counts as one).</summary>
    public WorkerPool(int threadCount)
    {
        if (threadCount < 1) throw new ArgumentOutOfRangeException(nameof(threadCount), "threads must be at least 1");
        ThreadCount = threadCount;
        _failures = new Exception?[threadCount];
        _threads = new Thread[threadCount - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            int worker = i + 1;
            _threads[i] = new Thread(() => WorkerLoop(worker)) { IsBackground = true, Name = $"meprop-worker-{worker}" };
            _threads[i].Start();
        }
    }

    /// <summary>Number of workers, the calling thread included.</summary>
    public int ThreadCount { get; }

    /// <summary>
    /// Runs body(args, t) for every t in [0, taskCount) and returns when all are done. Tasks must write
    /// disjoint memory. Not reentrant: a Run while another is in progress (from one of its tasks, or from
    /// another thread) throws <see cref="InvalidOperationException"/>, whatever the thread count, rather
    /// than deadlock. A task that throws ends its worker's share; Run returns once every worker's share has
    /// ended and rethrows the exception of the lowest-numbered worker that failed as it was thrown (its own
    /// type and stack), so a failing kernel throws the same type at any thread count.
    /// </summary>
    internal void Run(int taskCount, delegate*<void*, int, void> body, void* args)
    {
        int state = Interlocked.CompareExchange(ref _state, Running, Idle);
        ObjectDisposedException.ThrowIf(state == Disposed, this);
        if (state == Running)
            throw new InvalidOperationException("WorkerPool.Run while a run is in progress: a task must not start a run on its own pool, nor two threads share one");
        try
        {
            if (taskCount <= 0) return;
            if (ThreadCount == 1 || taskCount == 1)
            {
                for (int t = 0; t < taskCount; t++) body(args, t);
                return;
            }
            RunOnAllWorkers(taskCount, body, args);
        }
        finally
        {
            Volatile.Write(ref _state, Idle);
        }
    }

    private void RunOnAllWorkers(int taskCount, delegate*<void*, int, void> body, void* args)
    {
        _body = body;
        _args = args;
        _taskCount = taskCount;
        _pending = _threads.Length;
        Interlocked.Increment(ref _generation);
        if (Volatile.Read(ref _sleepers) > 0) WakeSleepers();
        try
        {
            RunShare(0);
        }
        catch (Exception e)
        {
            _failures[0] = e;
            _failed = true;
        }
        int spins = 0;
        while (Volatile.Read(ref _pending) != 0) PauseBriefly(++spins);
        if (!_failed) return;
        var first = _failures.First(e => e is not null)!;
        Array.Clear(_failures);
        _failed = false;
        ExceptionDispatchInfo.Throw(first);
    }

    private struct DynamicJob
    {
        public delegate*<void*, int, int, void> Body;
        public void* Args;
        public int TaskCount;
        public int Claimed;
    }

    /// <summary>
    /// Runs body(args, t, worker) for every t in [0, taskCount) and returns when all are done. Unlike
    /// <see cref="Run"/>, tasks go to whichever worker is free next (claimed in order), which balances
    /// tasks of uneven cost (a feature map with many candidates, another with few); worker (0 to
    /// ThreadCount - 1) is the thread running the task, for per-worker scratch. Tasks must write
    /// disjoint memory and compute the same whichever worker runs them, so results stay deterministic.
    /// </summary>
    internal void RunDynamic(int taskCount, delegate*<void*, int, int, void> body, void* args)
    {
        if (taskCount <= 0) return;
        var job = new DynamicJob { Body = body, Args = args, TaskCount = taskCount };
        // Task w of this run is worker w's share: a loop claiming tasks until none are left.
        Run(Math.Min(ThreadCount, taskCount), &ClaimTasks, &job);
    }

    private static void ClaimTasks(void* args, int worker)
    {
        var job = (DynamicJob*)args;
        for (int t = Interlocked.Increment(ref job->Claimed) - 1; t < job->TaskCount; t = Interlocked.Increment(ref job->Claimed) - 1)
            job->Body(job->Args, t, worker);
    }

    /// <summary>
    /// One step of a wait: mostly a pure spin, since runs within a training step come microseconds apart
    /// and a yield is a system call (slow in a VM); every 64th step yields the core, in case the thread
    /// being waited for needs it on a busy machine.
    /// </summary>
    private static void PauseBriefly(int spins)
    {
        if ((spins & 63) == 0) Thread.Yield();
        else Thread.SpinWait(8);
    }

    private void RunShare(int worker)
    {
        for (int t = worker; t < _taskCount; t += ThreadCount) _body(_args, t);
    }

    private void WorkerLoop(int worker)
    {
        int seen = 0;
        while (true)
        {
            long spinStart = Stopwatch.GetTimestamp();
            int spins = 0;
            while (Volatile.Read(ref _generation) == seen && !_stopping)
            {
                if (Stopwatch.GetTimestamp() - spinStart < SpinTicks)
                {
                    PauseBriefly(++spins);
                    continue;
                }
                // Announce the sleep, then look again under the monitor: a Run that advanced the generation
                // before the announcement is seen here; one after it finds a sleeper and pulses the monitor,
                // which it can only enter once this thread waits. The wait ends on a new generation only,
                // so an idle pool's workers stay asleep.
                lock (_sleep)
                {
                    Interlocked.Increment(ref _sleepers);
                    Interlocked.Increment(ref _naps);
                    while (Volatile.Read(ref _generation) == seen && !_stopping) Monitor.Wait(_sleep);
                    Interlocked.Decrement(ref _sleepers);
                }
                spinStart = Stopwatch.GetTimestamp();
                spins = 0;
            }
            // Dispose stops the workers only between runs, so no generation is left unserved.
            if (_stopping) return;
            seen = Volatile.Read(ref _generation);
            try
            {
                RunShare(worker);
            }
            catch (Exception e)
            {
                _failures[worker] = e;
                _failed = true;
            }
            Interlocked.Decrement(ref _pending);
        }
    }

    private void WakeSleepers()
    {
        lock (_sleep) Monitor.PulseAll(_sleep);
    }

    /// <summary>How many times a worker has gone to sleep (tests: an idle pool sleeps, it does not spin).</summary>
    internal long Naps => Volatile.Read(ref _naps);

    /// <summary>
    /// Stops the workers once a run in progress on another thread has ended (not to be called from a task);
    /// later runs throw <see cref="ObjectDisposedException"/>.
    /// </summary>
    public void Dispose()
    {
        var wait = new SpinWait();
        for (int state; (state = Interlocked.CompareExchange(ref _state, Disposed, Idle)) != Idle; wait.SpinOnce())
            if (state == Disposed) return;
        _stopping = true;
        WakeSleepers();
        foreach (var t in _threads) t.Join();
    }
}
