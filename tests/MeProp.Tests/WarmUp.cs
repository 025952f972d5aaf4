namespace MeProp.Tests;

/// <summary>Warm-up before measuring allocations of steady-state work.</summary>
internal static class WarmUp
{
    /// <summary>
    /// Runs <paramref name="step"/> a few times, pausing between runs long enough for the worker pool's
    /// threads to stop spinning and block: their first sleep and wake-up take one-time paths (the wake-up
    /// event's lazily made lock), which must happen here, not in the measured steps, whatever the load.
    /// </summary>
    public static void Run(Action step)
    {
        for (int i = 0; i < 3; i++)
        {
            step();
            Thread.Sleep(10);
        }
        step();
    }
}
