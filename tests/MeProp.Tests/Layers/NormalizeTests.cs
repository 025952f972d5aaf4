using MeProp.Layers;
using MeProp.Tensors;

namespace MeProp.Tests.Layers;

public class NormalizeTests
{
    [Fact]
    public void SubtractsTheMeanAndDividesByTheStdPerChannel()
    {
        var layer = new Normalize("normalize", [0.5f, -1f], [0.25f, 2f]);
        var x = new Tensor(2, 2, 1, 3);
        for (int i = 0; i < x.Length; i++) x.Span[i] = i;
        var y = layer.Forward(x, training: true).Span.ToArray();
        // image 0: channel 0 holds 0, 1, 2; channel 1 holds 3, 4, 5; image 1: 6, 7, 8 and 9, 10, 11.
        Assert.Equal([-2f, 2f, 6f, 2f, 2.5f, 3f, 22f, 26f, 30f, 5f, 5.5f, 6f], y);
        var dy = new Tensor(2, 2, 1, 3);
        dy.Span.Fill(1f);
        var dx = layer.Backward(dy)!.Span.ToArray();
        Assert.Equal([4f, 4f, 4f, 0.5f, 0.5f, 0.5f, 4f, 4f, 4f, 0.5f, 0.5f, 0.5f], dx);
    }

    [Fact]
    public void RejectsBadStatisticsAndShapes()
    {
        Assert.Throws<ArgumentException>(() => new Normalize("n", [0f], [0f]));
        Assert.Throws<ArgumentException>(() => new Normalize("n", [0f, 1f], [1f]));
        var layer = new Normalize("n", [0f, 0f, 0f], [1f, 1f, 1f]);
        Assert.Contains("3 channels", Assert.Throws<ArgumentException>(() => layer.OutputShape([4, 1, 8, 8])).Message);
    }

    [Fact]
    public void WarmCallsAllocateNothing()
    {
        var layer = new Normalize("normalize", [0.5f, 0.1f], [0.25f, 2f]);
        var x = new Tensor(3, 2, 4, 4);
        var dy = new Tensor(3, 2, 4, 4);
        layer.Forward(x, training: true);
        layer.Backward(dy);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 5; i++)
        {
            layer.Forward(x, training: true);
            layer.Backward(dy);
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}
