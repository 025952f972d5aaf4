namespace MeProp.Threading;

/// <summary>
/// A fixed set of worker threads that run numbered tasks. Task t always runs on worker
/// t % ThreadCount (a fixed partition), and every caller splits its work into tasks that write
/// disjoint outputs in a fixed order, so results never depend on timing. The calling thread is
/// worker 0, so a pool of one thread runs everything inline. Nothing is allocated per run: the
/// body is a function pointer and its arguments a pointer to a caller-owned struct.
/// </summary>
public sealed unsafe class WorkerPool : IDisposable
{
    private readonly Thread[] _threads;
    private readonly ManualResetEventSlim[] _start;
    private readonly ManualResetEventSlim _done = new(false, spinCount: 2000);
    private delegate*<void*, int, void> _body;
    private void* _args;
    private int _taskCount;
    private int _pending;
    private volatile bool _stopping;
    private Exception? _failure;

    /// <summary>Creates a pool of <paramref name="threadCount"/> workers (the caller counts as one).</summary>
    public WorkerPool(int threadCount)
    {
        if (threadCount < 1) throw new ArgumentOutOfRangeException(nameof(threadCount), "threads must be at least 1");
        ThreadCount = threadCount;
        _threads = new Thread[threadCount - 1];
        _start = new ManualResetEventSlim[threadCount - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            _start[i] = new ManualResetEventSlim(false, spinCount: 2000);
            int worker = i + 1;
            _threads[i] = new Thread(() => WorkerLoop(worker)) { IsBackground = true, Name = $"meprop-worker-{worker}" };
            _threads[i].Start();
        }
    }

    /// <summary>Number of workers, the calling thread included.</summary>
    public int ThreadCount { get; }

    /// <summary>
    /// Runs body(args, t) for every t in [0, taskCount) and returns when all are done. Tasks must write
    /// disjoint memory. Not reentrant: a task must not call Run on the same pool.
    /// </summary>
    public void Run(int taskCount, delegate*<void*, int, void> body, void* args)
    {
        if (taskCount <= 0) return;
        if (ThreadCount == 1 || taskCount == 1)
        {
            for (int t = 0; t < taskCount; t++) body(args, t);
            return;
        }
        int helpers = Math.Min(_threads.Length, taskCount - 1);
        _body = body;
        _args = args;
        _taskCount = taskCount;
        _failure = null;
        _pending = helpers;
        _done.Reset();
        for (int i = 0; i < helpers; i++) _start[i].Set();
        try
        {
            RunShare(0);
        }
        finally
        {
            _done.Wait();
        }
        if (_failure is not null) throw new AggregateException("a worker task failed", _failure);
    }

    private void RunShare(int worker)
    {
        for (int t = worker; t < _taskCount; t += ThreadCount) _body(_args, t);
    }

    private void WorkerLoop(int worker)
    {
        var start = _start[worker - 1];
        while (true)
        {
            start.Wait();
            start.Reset();
            if (_stopping) return;
            try
            {
                RunShare(worker);
            }
            catch (Exception e)
            {
                _failure = e;
            }
            if (Interlocked.Decrement(ref _pending) == 0) _done.Set();
        }
    }

    public void Dispose()
    {
        _stopping = true;
        foreach (var s in _start) s.Set();
        foreach (var t in _threads) t.Join();
        foreach (var s in _start) s.Dispose();
        _done.Dispose();
    }
}
