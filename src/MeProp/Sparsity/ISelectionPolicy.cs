using MeProp.Threading;

namespace MeProp.Sparsity;

/// <summary>
/// One way of choosing which entries of a layer's dL/dy meProp keeps: a pool of entries and how many of
/// it to keep. Every policy but random scores entries with the shared <see cref="GradientScorer"/> (|dy|,
/// or the running average) and ranks them with TopKSelection (random draws positions from the layer's
/// stream); all write the kept entries through the shared <see cref="SelectionScratch"/>; a policy is
/// called once per layer and step. The policies: per-channel
/// (<see cref="PerChannelSelection"/>), per-example-channel, channel (<see cref="ChannelSelection"/>), per-example, unified, random, and the
/// batch-averaged running gradient's channel-position selection. A new policy is a new type
/// implementing this, a member of <see cref="SelectionPolicy"/> (its name on the command line and in
/// checkpoints' configuration) and a line in GradientSparsifier's choice of policy type.
/// </summary>
internal interface ISelectionPolicy
{
    /// <summary>
    /// Chooses the kept entries of <paramref name="job"/>'s dy [N, U, P]: resets the scratch's Result to
    /// the policy's shape and capacity and fills it (only non-zero values are stored), adds each unit's
    /// number of chosen entries to the scratch's SelectedByUnit, and updates the running gradient when
    /// the job has one. Returns how many entries of dy are non-zero.
    /// </summary>
    long Select(ref SelectionJob job, WorkerPool pool);
}

/// <summary>One selection's inputs as the policies and their worker tasks see them (passed by pointer).</summary>
internal unsafe struct SelectionJob
{
    /// <summary>dL/dy [N, U, P] and, when <see cref="UseRunning"/>, the running gradient (its layout is the policy's).</summary>
    public float* Dy, Running;
    public int N, Units, Plane;
    /// <summary>Entries kept per pool and slots reserved per unit in the result: set by the policy.</summary>
    public int K, Capacity;
    public float Decay;
    public bool UseRunning;
    public SelectionScratch Scratch;

    /// <summary>Non-zero entries of dy, counted in one pass (for policies that do not count them while scoring).</summary>
    public readonly long CountNonZero() => SparsityCounters.CountNonZero(new ReadOnlySpan<float>(Dy, N * Units * Plane));
}
