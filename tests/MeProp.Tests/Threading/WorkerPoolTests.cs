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
}
