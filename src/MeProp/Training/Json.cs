using System.Text.Json;
using System.Text.Json.Serialization;

namespace MeProp.Training;

/// <summary>The one JSON style of our outputs: snake_case names, enums as lower-case strings.</summary>
public static class Json
{
    public static readonly JsonSerializerOptions Options = Create(indented: true);
    /// <summary>Same style on one line, for metrics.jsonl.</summary>
    public static readonly JsonSerializerOptions Line = Create(indented: false);

    private static JsonSerializerOptions Create(bool indented) => new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = indented,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower) },
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };
}
