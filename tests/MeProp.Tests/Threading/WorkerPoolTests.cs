using MeProp.Threading;

namespace MeProp.Tests.Threading;

public unsafe class WorkerPoolTests
{
    private struct Record
    {
        public int* Runs, Workers, Busy;
        public int ThreadCount;
        public int Overlaps;
    }

    /// <summary>Counts each task's runs, notes its worker, and flags two tasks on one worker at the same time.</summary>
    private static void RecordTask(void* args, int task, int worker)
    {
        var r = (Record*)args;
        if (worker < 0 || worker >= r->ThreadCount) throw new InvalidOperationException($"worker {worker} out of range");
        if (Interlocked.Exchange(ref r->Busy[worker], 1) != 0) Interlocked.Increment(ref r->Overlaps);
        Interlocked.Increment(ref r->Runs[task]);
        r->Workers[task] = worker;
        // Uneven tasks, so that workers finish at different times and claim different shares.
        Thread.SpinWait(task % 7 == 0 ? 20_000 : 50);
        Volatile.Write(ref r->Busy[worker], 0);
    }

    [Theory]
    [InlineData(1, 0)]
    [InlineData(1, 5)]
    [InlineData(2, 1)]
    [InlineData(2, 97)]
    [InlineData(3, 2)]
    [InlineData(4, 300)]
    public void RunDynamicRunsEveryTaskOnceAndAWorkerOneTaskAtATime(int threads, int tasks)
    {
        using var pool = new WorkerPool(threads);
        var runs = new int[tasks];
        var workers = new int[tasks];
        var busy = new int[threads];
        for (int repeat = 0; repeat < 3; repeat++)
        {
            Array.Clear(runs);
            fixed (int* pr = runs, pw = workers, pb = busy)
            {
                var record = new Record { Runs = pr, Workers = pw, Busy = pb, ThreadCount = threads };
                pool.RunDynamic(tasks, &RecordTask, &record);
                Assert.Equal(0, record.Overlaps);
            }
            Assert.All(runs, count => Assert.Equal(1, count));
            Assert.All(workers, w => Assert.InRange(w, 0, threads - 1));
        }
    }

    private static void CountTask(void* args, int task) => Interlocked.Increment(ref ((int*)args)[task]);

    private static void WaitFor(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "the pool's workers did not go to sleep within 10 s");
            Thread.Sleep(5);
        }
    }

    [Fact]
    public void AnIdlePoolsWorkersSleepAfterARunThatWokeThem()
    {
        using var pool = new WorkerPool(3);
        var counts = new int[8];
        WaitFor(() => pool.Naps >= 2);
        // Both workers are asleep: this run wakes them. Once they sleep again, an idle pool must leave
        // them asleep (a wake signal left standing would send them round spin and sleep, using the cores).
        fixed (int* c = counts) pool.Run(counts.Length, &CountTask, c);
        Assert.All(counts, n => Assert.Equal(1, n));
        WaitFor(() => pool.Naps >= 4);
        long naps = pool.Naps;
        Thread.Sleep(100);
        Assert.Equal(naps, pool.Naps);
        fixed (int* c = counts) pool.Run(counts.Length, &CountTask, c);
        Assert.All(counts, n => Assert.Equal(2, n));
    }

    private struct Failing
    {
        public int FailAt;
        public int* Counts;
    }

    private static void FailAtTask(void* args, int task)
    {
        var f = (Failing*)args;
        Interlocked.Increment(ref f->Counts[task]);
        if (task == f->FailAt) throw new FormatException($"task {task}");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void ATaskExceptionIsRethrownAsItselfAndThePoolStaysUsable(int threads)
    {
        using var pool = new WorkerPool(threads);
        var counts = new int[9];
        // Task 4 runs on worker 4 % threads: the caller's share at one thread, another worker's at three.
        fixed (int* c = counts)
        {
            var failing = new Failing { FailAt = 4, Counts = c };
            Exception? caught = null;
            try { pool.Run(counts.Length, &FailAtTask, &failing); }
            catch (Exception e) { caught = e; }
            var failure = Assert.IsType<FormatException>(caught);
            Assert.Equal("task 4", failure.Message);
            Assert.Contains(nameof(FailAtTask), failure.StackTrace);
        }
        Array.Clear(counts);
        fixed (int* c = counts) pool.Run(counts.Length, &CountTask, c);
        Assert.All(counts, n => Assert.Equal(1, n));
    }

    private static void NoteTask(void* args, int task) => ((int*)args)[task] = Environment.CurrentManagedThreadId;

    [Fact]
    public void RunGivesTaskTToWorkerTModuloThreadCount()
    {
        // Callers index per-worker scratch by t % ThreadCount (Conv2d's image tasks): task t must run on
        // that worker every time, the caller being worker 0.
        using var pool = new WorkerPool(3);
        var threadOf = new int[10];
        for (int repeat = 0; repeat < 3; repeat++)
        {
            fixed (int* p = threadOf) pool.Run(threadOf.Length, &NoteTask, p);
            Assert.Equal(Environment.CurrentManagedThreadId, threadOf[0]);
            for (int t = 0; t < threadOf.Length; t++) Assert.Equal(threadOf[t % 3], threadOf[t]);
            Assert.Equal(3, threadOf.Distinct().Count());
        }
    }

    /// <summary>The pool <see cref="RunAgain"/> runs on (tests of a class run one at a time).</summary>
    private static WorkerPool? s_nestedPool;

    private static void RunAgain(void* args, int task)
    {
        var counts = stackalloc int[2];
        try
        {
            s_nestedPool!.Run(2, &CountTask, counts);
        }
        catch (InvalidOperationException)
        {
            Interlocked.Increment(ref *(int*)args);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void ARunFromATaskIsRefusedAtAnyThreadCount(int threads)
    {
        using var pool = new WorkerPool(threads);
        s_nestedPool = pool;
        int refused = 0;
        pool.Run(4, &RunAgain, &refused);
        Assert.Equal(4, refused);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void RunAfterDisposeThrows(int threads)
    {
        var pool = new WorkerPool(threads);
        pool.Dispose();
        var counts = new int[6];
        Exception? caught = null;
        fixed (int* c = counts)
        {
            try { pool.Run(counts.Length, &CountTask, c); }
            catch (Exception e) { caught = e; }
        }
        Assert.IsType<ObjectDisposedException>(caught);
        Assert.All(counts, n => Assert.Equal(0, n));
    }

    private static void SlowTask(void* args, int task)
    {
        Thread.Sleep(20);
        Interlocked.Increment(ref ((int*)args)[task]);
    }

    [Fact]
    public void DisposeWaitsForARunInProgressOnAnotherThread()
    {
        var pool = new WorkerPool(3);
        var counts = new int[12];
        using var started = new ManualResetEventSlim();
        var run = new Thread(() =>
        {
            fixed (int* c = counts)
            {
                started.Set();
                pool.Run(counts.Length, &SlowTask, c);
            }
        });
        run.Start();
        started.Wait();
        Thread.Sleep(5);
        pool.Dispose();
        Assert.True(run.Join(TimeSpan.FromSeconds(10)), "the run did not end");
        Assert.All(counts, n => Assert.Equal(1, n));
        pool.Dispose();
    }
}
