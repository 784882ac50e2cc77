using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.Json;
using NatKit.Nat;

namespace NatKit.Lab.Topology;

/// <summary>
/// The one file schema for a NAT policy: the knobs of <see cref="NatPolicy"/> in kebab-case
/// (<c>mapping: endpoint-independent</c>, <c>udp-timeout: 300s</c>), exactly what a lab topology's router takes
/// under <c>nat:</c>. `natkit gateway run --policy FILE` reads it (YAML, or JSON by the .json extension) and
/// `natkit lab netns up` writes it for its gateways. Unknown knobs and bad values are refused, each error naming
/// the line and the knob.
/// </summary>
public static class NatPolicyFile
{
    private static readonly PropertyInfo[] Knobs = typeof(NatPolicy)
        .GetProperties(BindingFlags.Public | BindingFlags.Instance)
        .Where(p => p.CanWrite)
        .ToArray();

    /// <summary>Reads a policy file: the knobs it names, set on <paramref name="basePolicy"/> (RFC-recommended
    /// when null).</summary>
    /// <exception cref="TopologyException">The file cannot be read or is not a valid policy.</exception>
    public static NatPolicy Load(string path, NatPolicy? basePolicy = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        return Parse(TopologyLoader.ReadText(path), path, basePolicy);
    }

    /// <summary>Parses policy text; JSON when <paramref name="fileName"/> ends in .json, YAML otherwise.</summary>
    /// <exception cref="TopologyException">The text is not a valid policy.</exception>
    public static NatPolicy Parse(string text, string fileName, NatPolicy? basePolicy = null)
    {
        ArgumentNullException.ThrowIfNull(fileName);
        var format = fileName.EndsWith(".json", StringComparison.OrdinalIgnoreCase) ? TopologyFormat.Json : TopologyFormat.Yaml;
        return TopologyLoader.ParsePolicy(text, fileName, format, basePolicy ?? NatPresets.RfcRecommended);
    }

    /// <summary>Every knob of <paramref name="policy"/> as a JSON object in the file schema; <see cref="Parse"/>
    /// reads it back to an equal policy.</summary>
    public static string ToJson(NatPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(policy);
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            foreach (var knob in Knobs)
            {
                var name = TopologyLoader.Kebab(knob.Name);
                switch (knob.GetValue(policy))
                {
                    case null:
                        json.WriteNull(name);
                        break;
                    case bool b:
                        json.WriteBoolean(name, b);
                        break;
                    case int i:
                        json.WriteNumber(name, i);
                        break;
                    case TimeSpan t:
                        json.WriteString(name, Duration(t));
                        break;
                    case Enum e:
                        json.WriteString(name, TopologyLoader.Kebab(e.ToString()));
                        break;
                    case var other:
                        throw new NotSupportedException($"knob {knob.Name} of type {other.GetType().Name} has no file form");
                }
            }

            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary>A duration as files write it (<see cref="LabDuration"/>): whole seconds, else microseconds.</summary>
    private static string Duration(TimeSpan t) => t.Ticks % TimeSpan.TicksPerSecond == 0
        ? string.Create(CultureInfo.InvariantCulture, $"{t.Ticks / TimeSpan.TicksPerSecond}s")
        : string.Create(CultureInfo.InvariantCulture, $"{t.Ticks / 10.0}us");
}
