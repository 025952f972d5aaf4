using System.Numerics;
using System.Runtime.CompilerServices;
using MeProp.Layers;
using MeProp.Tensors;
using MeProp.Threading;

namespace MeProp.Optimizers;

/// <summary>
/// Adam (Kingma and Ba), in PyTorch's arithmetic: m = β1·m + (1-β1)·g; v = β2·v + (1-β2)·g²;
/// p -= (lr / (1-β1^t)) · m / (sqrt(v) / sqrt(1-β2^t) + ε). One fused pass per parameter reads p, g,
/// m, v once, writes p, m, v and zeroes g. Threads split each parameter into fixed chunks.
/// </summary>
public sealed unsafe class Adam : IOptimizer
{
    private const int Chunk = 1 << 14;
    private readonly IReadOnlyList<Parameter> _parameters;
    private readonly Tensor[] _m, _v;
    private readonly WorkerPool _pool;

    public Adam(IReadOnlyList<Parameter> parameters, WorkerPool pool, float learningRate = 1e-3f,
        float beta1 = 0.9f, float beta2 = 0.999f, float epsilon = 1e-8f)
    {
        if (!(learningRate > 0)) throw new ArgumentException($"Adam: learning rate must be positive, got {learningRate}");
        if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) throw new ArgumentException("Adam: betas must be in [0, 1)");
        if (!(epsilon > 0)) throw new ArgumentException("Adam: epsilon must be positive");
        _parameters = parameters;
        _pool = pool;
        LearningRate = learningRate; Beta1 = beta1; Beta2 = beta2; Epsilon = epsilon;
        _m = parameters.Select(p => new Tensor(p.Value.ShapeArray())).ToArray();
        _v = parameters.Select(p => new Tensor(p.Value.ShapeArray())).ToArray();
    }

    public float LearningRate { get; }
    public float Beta1 { get; }
    public float Beta2 { get; }
    public float Epsilon { get; }
    public long Step { get; private set; }

    private struct Job
    {
        public float* P, G, M, V;
        public int Length;
        public float Beta1, Beta2, StepSize, InverseRootBias2, Epsilon;
    }

    public void Update()
    {
        Step++;
        double bias1 = 1 - Math.Pow(Beta1, Step), bias2 = 1 - Math.Pow(Beta2, Step);
        for (int i = 0; i < _parameters.Count; i++)
        {
            var p = _parameters[i];
            fixed (float* pp = p.Value.Storage, pg = p.Gradient.Storage, pm = _m[i].Storage, pv = _v[i].Storage)
            {
                var job = new Job
                {
                    P = pp, G = pg, M = pm, V = pv, Length = p.Value.Length, Beta1 = Beta1, Beta2 = Beta2,
                    StepSize = (float)(LearningRate / bias1), InverseRootBias2 = (float)(1 / Math.Sqrt(bias2)), Epsilon = Epsilon,
                };
                _pool.Run((job.Length + Chunk - 1) / Chunk, &UpdateChunk, &job);
            }
        }
    }

    private static void UpdateChunk(void* args, int chunk)
    {
        ref Job j = ref Unsafe.AsRef<Job>(args);
        int start = chunk * Chunk, end = Math.Min(j.Length, start + Chunk);
        float b1 = j.Beta1, b2 = j.Beta2, c1 = 1 - b1, c2 = 1 - b2;
        int i = start;
        int width = Vector<float>.Count;
        var vb1 = new Vector<float>(b1); var vb2 = new Vector<float>(b2);
        var vc1 = new Vector<float>(c1); var vc2 = new Vector<float>(c2);
        var vStep = new Vector<float>(j.StepSize); var vRoot = new Vector<float>(j.InverseRootBias2); var vEps = new Vector<float>(j.Epsilon);
        for (; i + width <= end; i += width)
        {
            var g = Vector.Load(j.G + i);
            var m = vb1 * Vector.Load(j.M + i) + vc1 * g;
            var v = vb2 * Vector.Load(j.V + i) + vc2 * g * g;
            var p = Vector.Load(j.P + i) - vStep * m / (Vector.SquareRoot(v) * vRoot + vEps);
            Vector.Store(m, j.M + i);
            Vector.Store(v, j.V + i);
            Vector.Store(p, j.P + i);
            Vector.Store(Vector<float>.Zero, j.G + i);
        }
        for (; i < end; i++)
        {
            float g = j.G[i];
            float m = b1 * j.M[i] + c1 * g;
            float v = b2 * j.V[i] + c2 * g * g;
            j.M[i] = m;
            j.V[i] = v;
            j.P[i] -= j.StepSize * m / (MathF.Sqrt(v) * j.InverseRootBias2 + j.Epsilon);
            j.G[i] = 0;
        }
    }

    public IEnumerable<(string Name, Tensor State)> State()
    {
        for (int i = 0; i < _parameters.Count; i++)
        {
            yield return (_parameters[i].Name + ".exp_avg", _m[i]);
            yield return (_parameters[i].Name + ".exp_avg_sq", _v[i]);
        }
    }

    public void RestoreStep(long step) => Step = step;
}
