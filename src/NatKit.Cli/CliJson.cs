using System.Text.Json;
using System.Text.Json.Nodes;

namespace NatKit.Cli;

/// <summary>
/// The one `--json` shape of the verbs that print records: a single JSON array on stdout, one object per record,
/// each beginning with its "name" (a preset, a host, a server), then the record's own camelCase fields. A script
/// reads it with one parse, whatever the number of records, and knows which record is which.
/// </summary>
internal static class CliJson
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>Prints <paramref name="records"/>, each a name and the JSON object of its fields, as one array.</summary>
    public static void WriteRecords(IEnumerable<(string Name, string Json)> records)
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
                    record[key] = value;
                }
            }

            array.Add(record);
        }

        Console.WriteLine(array.ToJsonString(Indented));
    }
}
