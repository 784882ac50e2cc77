using System.Text.Json;
using System.Text.Json.Nodes;

namespace NatKit.Cli;

/// <summary>
/// The one `--json` shape of the verbs that print records: a single JSON array on stdout, one object per record,
/// each beginning with its "name" (a preset, a host, a server, a session, a flow), then the record's own camelCase
/// fields. A script reads it with one parse, whatever the number of records (none gives <c>[]</c>), and knows which
/// record is which.
/// </summary>
internal static class CliJson
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };
    private static readonly JsonSerializerOptions Fields = new(JsonSerializerDefaults.Web);

    /// <summary>Prints <paramref name="records"/>, each a name and the JSON object of its fields, as one array.</summary>
    public static void WriteRecords(IEnumerable<(string Name, string Json)> records) => Console.WriteLine(Format(records));

    /// <summary>Prints <paramref name="items"/> as one array, each named by <paramref name="name"/>, its public
    /// properties as camelCase fields.</summary>
    public static void WriteRecords<T>(IEnumerable<T> items, Func<T, string> name)
    {
        ArgumentNullException.ThrowIfNull(items);
        ArgumentNullException.ThrowIfNull(name);
        WriteRecords(items.Select(i => (name(i), JsonSerializer.Serialize(i, Fields))));
    }

    /// <summary>The array <see cref="WriteRecords(IEnumerable{ValueTuple{string, string}})"/> prints, as text (for
    /// a verb that writes it to a file).</summary>
    public static string Format(IEnumerable<(string Name, string Json)> records)
    {
        ArgumentNullException.ThrowIfNull(records);
        var array = new JsonArray();
        foreach (var (name, json) in records)
        {
            var record = new JsonObject { ["name"] = name };
            if (JsonNode.Parse(json) is JsonObject fields)
            {
                foreach (var (key, value) in fields.ToList())
                {
                    fields.Remove(key);
                    if (key != "name")
                    {
                        record[key] = value;
                    }
                }
            }

            array.Add(record);
        }

        return array.ToJsonString(Indented);
    }
}
