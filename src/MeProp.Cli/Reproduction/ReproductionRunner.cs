using System.Collections.Concurrent;
using MeProp.Data;
using MeProp.Layers;
using MeProp.Training;

namespace MeProp.Cli.Reproduction;

/// <summary>One run of the grid: a configuration trained from one seed.</summary>
internal sealed record ReproductionRun(ReproductionConfig Config, ulong Seed)
{
    /// <summary>Path of the run below a root: CONFIG/seed-N.</summary>
    public string RelativePath => Path.Combine(Config.Name, $"seed-{Seed}");
}

/// <summary>
/// Trains the runs of a reproduction, <c>jobs</c> at a time in this process (each with its own threads),
/// resumable: a run trains in its directory under the checkpoint root, which holds last.safetensors, and
/// after every epoch its metrics.jsonl (and at the end summary.json) are copied to the same path under the
/// results root, which holds no checkpoints and so can be committed. A run whose results already show all
/// its epochs is skipped; one with a checkpoint resumes after its last completed epoch; one whose
/// checkpoint is gone starts again (runs are deterministic for a seed, so it writes the same lines again).
/// </summary>
internal sealed class ReproductionRunner(string resultsRoot, string checkpointRoot, ImageData data, int epochs, int threads, int devSize, int? maxTrain)
{
    private readonly object _consoleLock = new();

    /// <summary>Whether the results root holds a summary of this run with all its epochs.</summary>
    public bool IsFinished(ReproductionRun run)
    {
        string summary = Path.Combine(resultsRoot, run.RelativePath, Trainer.SummaryFile);
        return File.Exists(summary) && RunRecord.Read(Path.Combine(resultsRoot, run.RelativePath)).EpochsCompleted >= epochs;
    }

    /// <summary>
    /// Trains every unfinished run; <paramref name="afterRun"/> is called (under a lock) after each one. A finished
    /// run trained with other options than its configuration asks for now (another --dev-size or --max-train, say)
    /// is an error: reusing it would report it under this grid's settings.
    /// </summary>
    public void RunAll(IReadOnlyList<ReproductionRun> runs, int jobs, Action afterRun)
    {
        foreach (var run in runs.Where(IsFinished)) CheckFinishedOptions(run);
        var queue = new ConcurrentQueue<ReproductionRun>(runs.Where(run => !IsFinished(run)));
        Log($"{runs.Count - queue.Count} of {runs.Count} runs finished earlier; {queue.Count} to train, {jobs} at a time with {threads} thread(s) each");
        var failures = new ConcurrentQueue<Exception>();
        var workers = Enumerable.Range(0, Math.Min(jobs, Math.Max(1, queue.Count))).Select(_ => new Thread(() =>
        {
            while (failures.IsEmpty && queue.TryDequeue(out var run))
            {
                try
                {
                    Train(run);
                    lock (_consoleLock) afterRun();
                }
                catch (Exception e) { failures.Enqueue(e); }
            }
        })).ToList();
        foreach (var worker in workers) worker.Start();
        foreach (var worker in workers) worker.Join();
        if (failures.TryPeek(out var failure)) throw failure;
    }

    private void CheckFinishedOptions(ReproductionRun run)
    {
        string path = Path.Combine(resultsRoot, run.RelativePath, Trainer.SummaryFile);
        TrainOptions? stored;
        try { stored = System.Text.Json.JsonSerializer.Deserialize<TrainSummary>(File.ReadAllText(path), Json.Options)?.Config; }
        catch (System.Text.Json.JsonException e) { throw new InvalidDataException($"{path}: not a run summary ({e.Message})"); }
        var options = run.Config.Options(run.Seed, epochs, threads, devSize, maxTrain);
        // What defines the experiment must match; how it was computed need not (threads, the fused update and the
        // evaluation batch give the same results; exact sparsity the same gradients within float rounding).
        if (stored is null || stored with { Epochs = epochs, Threads = threads, FusedUpdate = options.FusedUpdate, EvalBatchSize = options.EvalBatchSize, ExactSparsity = options.ExactSparsity } != options)
            throw new InvalidOperationException($"{path}: the run was trained with other options than {run.Config.Name} seed {run.Seed} asks for (--dev-size, --max-train?); give another --out, or move it away to train it again");
    }

    private void Train(ReproductionRun run)
    {
        string directory = Path.Combine(checkpointRoot, run.RelativePath);
        string published = Path.Combine(resultsRoot, run.RelativePath);
        var options = run.Config.Options(run.Seed, epochs, threads, devSize, maxTrain);
        string checkpoint = Path.Combine(directory, Trainer.LastCheckpoint);
        RunDirectory claimed;
        try { claimed = RunDirectory.Claim(directory, RunDirectoryMode.Resume); }
        catch (RunDirectoryInUseException)
        {
            Log($"{run.Config.Name} seed {run.Seed}: skipped, another process is training it");
            return;
        }
        using var held = claimed;
        using var compute = new ComputeContext(threads);
        var split = DatasetSplit.Create(data.Training, devSize, maxTrain);
        var trainer = new Trainer(options, compute, split, data.Test, directory);
        if (File.Exists(checkpoint))
        {
            var stored = Checkpoint.ReadOptions(checkpoint);
            if (stored with { Epochs = epochs, Threads = threads } != options)
                throw new InvalidOperationException($"{checkpoint}: was trained with other options than {run.Config.Name} seed {run.Seed} asks for; move it away to start this run again");
            trainer.Resume(checkpoint);
            Log($"{run.Config.Name} seed {run.Seed}: resuming after epoch {trainer.Progress.EpochsCompleted}");
        }
        else
        {
            // An epoch's metrics may have been written before a crash took its checkpoint: start clean.
            foreach (string file in Directory.GetFiles(directory).Where(f => Path.GetFileName(f) != RunDirectory.LockFile)) File.Delete(file);
            Log($"{run.Config.Name} seed {run.Seed}: training {epochs} epochs");
        }
        Directory.CreateDirectory(published);
        // A summary there is of fewer epochs (--epochs raised): gone until this training writes its own.
        File.Delete(Path.Combine(published, Trainer.SummaryFile));
        trainer.Run(new PublishingObserver(this, run, directory, published));
        Publish(directory, published, Trainer.MetricsFile);
        Publish(directory, published, Trainer.SummaryFile);
    }

    private static void Publish(string from, string to, string file) =>
        AtomicFile.WriteAllText(Path.Combine(to, file), File.ReadAllText(Path.Combine(from, file)));

    private void Log(string message)
    {
        lock (_consoleLock) Console.WriteLine($"[{DateTime.Now:HH:mm:ss}] {message}");
    }

    /// <summary>Copies metrics.jsonl to the results root after each epoch and logs one line per epoch.</summary>
    private sealed class PublishingObserver(ReproductionRunner runner, ReproductionRun run, string directory, string published) : ITrainingObserver
    {
        private int _epochs;

        public void EpochStarted(int epoch, int epochs, int steps) => _epochs = epochs;
        public void StepCompleted(int step, double meanLoss) { }

        public void EpochCompleted(EpochMetrics m)
        {
            Publish(directory, published, Trainer.MetricsFile);
            string dev = m.DevAccuracy is double d ? $"{d:F4}" : "n/a";
            string warnings = string.Concat((m.Warnings ?? []).Select(w => "; warning: " + w));
            runner.Log($"{run.Config.Name} seed {run.Seed}: epoch {m.Epoch}/{_epochs}: loss {m.TrainLoss:F4} dev {dev} test {m.TestAccuracy:F4} ({m.EpochSeconds:F1} s){warnings}");
        }
    }
}
