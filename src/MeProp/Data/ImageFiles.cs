using StbImageSharp;

namespace MeProp.Data;

/// <summary>
/// Single image files (PNG, JPEG, BMP) as the engine's input: decoded by StbImageSharp into
/// <c>channels</c> planes (1: grey-scale, 3: RGB) of values in [0, 1], CHW order.
/// </summary>
public static class ImageFiles
{
    public static readonly string[] Extensions = [".png", ".jpg", ".jpeg", ".bmp"];

    /// <summary>Header only: width, height and whether the file is in colour. Errors name the file.</summary>
    public static (int Width, int Height, bool Colour) Info(string path)
    {
        try
        {
            using var stream = File.OpenRead(path);
            var info = ImageInfo.FromStream(stream) ?? throw new DataFormatException($"{path}: not a readable image (PNG, JPEG or BMP)");
            return (info.Width, info.Height, info.ColorComponents is ColorComponents.RedGreenBlue or ColorComponents.RedGreenBlueAlpha);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException or UnauthorizedAccessException)
        {
            throw new DataFormatException($"{path}: cannot be read ({e.Message})", e);
        }
    }

    /// <summary>Decodes <paramref name="path"/> into <paramref name="target"/> (channels x height x width values).</summary>
    public static void Decode(string path, int channels, Span<float> target)
    {
        ImageResult image;
        try
        {
            image = ImageResult.FromMemory(File.ReadAllBytes(path), channels == 3 ? ColorComponents.RedGreenBlue : ColorComponents.Grey);
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or IndexOutOfRangeException)
        {
            throw new DataFormatException($"{path}: cannot be decoded ({e.Message})", e);
        }
        int plane = image.Width * image.Height;
        if (target.Length != channels * plane)
            throw new DataFormatException($"{path}: {image.Width}x{image.Height} pixels, {target.Length / channels} expected per channel");
        // stb gives interleaved HWC bytes; the engine takes planes (CHW).
        for (int c = 0; c < channels; c++)
            for (int i = 0; i < plane; i++)
                target[c * plane + i] = image.Data[i * channels + c] / 255f;
    }
}
