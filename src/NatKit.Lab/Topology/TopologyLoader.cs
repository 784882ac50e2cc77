using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.Json;
using NatKit.Nat;
using NatKit.Packets;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace NatKit.Lab.Topology;

/// <summary>Topology file formats. JSON is read as the YAML subset it is, after a strict JSON syntax check.</summary>
public enum TopologyFormat
{
    Yaml,
    Json,
}

/// <summary>
/// Reads topology files (YAML or JSON) into a validated <see cref="TopologySpec"/>. Every problem found is
/// reported at once, each with the file, the line and column, and the field path (<c>routers.home.nat.mapping</c>);
/// see docs/lab.md for the format.
/// </summary>
public static class TopologyLoader
{
    /// <summary>Reads a file; the format follows the extension (.json is JSON, anything else YAML).</summary>
    /// <exception cref="TopologyException">The file cannot be read or is not a valid topology.</exception>
    public static TopologySpec LoadFile(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var text = ReadText(path);
        var format = path.EndsWith(".json", StringComparison.OrdinalIgnoreCase) ? TopologyFormat.Json : TopologyFormat.Yaml;
        return Parse(text, path, format);
    }

    /// <summary>A file's text; a file that cannot be read is a <see cref="TopologyException"/> naming it.</summary>
    internal static string ReadText(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TopologyException([new TopologyError(path, 0, 0, "(file)", e.Message)]);
        }
    }

    /// <summary>Parses topology text; <paramref name="fileName"/> is what error messages call it.</summary>
    /// <exception cref="TopologyException">The text is not a valid topology.</exception>
    public static TopologySpec Parse(string text, string fileName, TopologyFormat format = TopologyFormat.Yaml)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(fileName);
        var root = LoadRoot(text, fileName, format);
        var reader = new Reader(fileName);
        var spec = reader.ReadRoot(root);
        if (reader.Errors.Count > 0)
        {
            throw new TopologyException(reader.Errors);
        }

        return spec!;
    }

    /// <summary>A policy file (a router's <c>nat:</c> mapping on its own, the same kebab-case knobs and values):
    /// the knobs it names set on <paramref name="basePolicy"/>. Unknown knobs and bad values are refused with
    /// their line and key.</summary>
    /// <exception cref="TopologyException">The text is not a valid policy.</exception>
    internal static NatPolicy ParsePolicy(string text, string fileName, TopologyFormat format, NatPolicy basePolicy)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(basePolicy);
        var root = LoadRoot(text, fileName, format, "a policy is a mapping of NAT knobs (mapping, filtering, hairpinning, ...)");
        var reader = new Reader(fileName);
        var policy = reader.Knobs(basePolicy, root, "");
        if (reader.Errors.Count > 0 || policy is null)
        {
            throw new TopologyException(reader.Errors);
        }

        return policy;
    }

    private static YamlMappingNode LoadRoot(string text, string fileName, TopologyFormat format,
        string rootProblem = "a topology is a mapping with segments, routers and hosts")
    {
        if (format == TopologyFormat.Json)
        {
            try
            {
                using var _ = JsonDocument.Parse(text, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = false });
            }
            catch (JsonException e)
            {
                throw new TopologyException([new TopologyError(fileName, (int)(e.LineNumber ?? -1) + 1,
                    (int)(e.BytePositionInLine ?? -1) + 1, "(syntax)", "not valid JSON: " + FirstSentence(e.Message))]);
            }

            // Outside strings, JSON's tabs are only whitespace; YAML refuses tabs as indentation.
            text = text.Replace('\t', ' ');
        }

        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(text));
        }
        catch (YamlException e)
        {
            throw new TopologyException([new TopologyError(fileName, (int)e.Start.Line, (int)e.Start.Column,
                "(syntax)", $"not valid {(format == TopologyFormat.Json ? "JSON" : "YAML")}: {Innermost(e)}")]);
        }
        catch (InvalidOperationException e)
        {
            // YamlDotNet's scanner throws this on some malformed input instead of a YamlException.
            throw new TopologyException([new TopologyError(fileName, 0, 0, "(syntax)",
                $"not valid {(format == TopologyFormat.Json ? "JSON" : "YAML")}: {e.Message}")]);
        }

        if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is not YamlMappingNode root)
        {
            throw new TopologyException([new TopologyError(fileName, 1, 1, "(root)", rootProblem)]);
        }

        return root;
    }

    private static string Innermost(Exception e)
    {
        while (e.InnerException is not null) e = e.InnerException;
        var m = e.Message;
        var i = m.IndexOf("): ", StringComparison.Ordinal);
        return i >= 0 && m.StartsWith('(') ? m[(i + 3)..] : m;
    }

    private static string FirstSentence(string message)
    {
        var i = message.IndexOf(" Path:", StringComparison.Ordinal);
        return i > 0 ? message[..i] : message;
    }

    /// <summary>Field names in files are kebab-case: UdpTimeout is udp-timeout.</summary>
    internal static string Kebab(string pascal)
    {
        var sb = new StringBuilder();
        for (var i = 0; i < pascal.Length; i++)
        {
            if (char.IsUpper(pascal[i]) && i > 0) sb.Append('-');
            sb.Append(char.ToLowerInvariant(pascal[i]));
        }

        return sb.ToString();
    }

    private sealed class Reader(string file)
    {
        private static readonly PropertyInfo[] PolicyKnobs = typeof(NatPolicy)
            .GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.CanWrite)
            .ToArray();

        public List<TopologyError> Errors { get; } = [];

        public TopologySpec? ReadRoot(YamlMappingNode root)
        {
            var fields = Fields(root, "", ["seed", "segments", "routers", "hosts"]);
            var seed = fields.TryGetValue("seed", out var seedNode) ? Int(seedNode, "seed", int.MinValue, int.MaxValue) ?? 1 : 1;
            var segments = new List<SegmentSpec>();
            var routers = new List<RouterSpec>();
            var hosts = new List<HostSpec>();
            var owners = new Dictionary<(string, uint), string>();
            var names = new HashSet<string>(StringComparer.Ordinal);

            if (!fields.TryGetValue("segments", out var segNode))
            {
                Error(root, "segments", "missing: a topology needs at least one segment");
            }
            else
            {
                foreach (var (name, node, path) in Named(segNode, "segments"))
                {
                    var f = Fields(node, path, ["prefix", "link"]);
                    var prefix = f.TryGetValue("prefix", out var p) ? Prefix(p, path + ".prefix") : Missing<Ipv4Prefix?>(node, path + ".prefix", "an IPv4 prefix such as 192.168.1.0/24 (0.0.0.0/0 for a flat internet)");
                    var link = f.TryGetValue("link", out var l) ? Link(l, path + ".link") : LinkProfile.Perfect;
                    if (prefix is { } pr && link is not null)
                    {
                        segments.Add(new SegmentSpec(name, pr, link));
                    }
                }
            }

            var segmentByName = segments.ToDictionary(s => s.Name, StringComparer.Ordinal);
            var insideTaken = new Dictionary<string, string>(StringComparer.Ordinal);
            if (fields.TryGetValue("routers", out var routersNode))
            {
                foreach (var (name, node, path) in Named(routersNode, "routers"))
                {
                    var router = ReadRouter(name, node, path, segmentByName, owners, insideTaken);
                    if (router is not null)
                    {
                        if (!names.Add(name)) Error(node, path, $"the name {name} is already used by a host or router");
                        routers.Add(router);
                    }
                }

                CheckRouterLoops(routers, routersNode);
            }

            if (fields.TryGetValue("hosts", out var hostsNode))
            {
                foreach (var (name, node, path) in Named(hostsNode, "hosts"))
                {
                    var host = ReadHost(name, node, path, segmentByName, owners);
                    if (host is not null)
                    {
                        if (!names.Add(name)) Error(node, path, $"the name {name} is already used by a host or router");
                        hosts.Add(host);
                    }
                }
            }

            return Errors.Count > 0 ? null : new TopologySpec(file, seed, segments, routers, hosts);
        }

        private RouterSpec? ReadRouter(string name, YamlNode node, string path, Dictionary<string, SegmentSpec> segments,
            Dictionary<(string, uint), string> owners, Dictionary<string, string> insideTaken)
        {
            var f = Fields(node, path, ["preset", "nat", "inside", "outside"]);
            var presetName = "rfc-recommended";
            NatPolicy? policy = NatPresets.RfcRecommended;
            if (f.TryGetValue("preset", out var presetNode))
            {
                presetName = Scalar(presetNode, path + ".preset") ?? presetName;
                var preset = NatPresets.Find(presetName);
                if (preset is null)
                {
                    Error(presetNode, path + ".preset", $"unknown preset '{presetName}'; known: {string.Join(", ", NatPresets.All.Select(p => p.Name))}");
                    policy = null;
                }
                else
                {
                    policy = preset.Policy;
                }
            }

            f.TryGetValue("nat", out var natNode);
            if (policy is not null && natNode is not null)
            {
                policy = Knobs(policy, natNode, path + ".nat");
            }

            if (!f.TryGetValue("inside", out var insideNode))
            {
                Error(node, path + ".inside", "missing: the router's LAN side {segment, address}");
            }

            if (!f.TryGetValue("outside", out var outsideNode))
            {
                Error(node, path + ".outside", "missing: the router's WAN side {segment, address or addresses}");
            }

            if (insideNode is null || outsideNode is null)
            {
                return null;
            }

            var inside = Attachment(insideNode, path + ".inside", segments, owners, name, single: true);
            var outside = Attachment(outsideNode, path + ".outside", segments, owners, name, single: false);
            if (inside is null || outside is null || policy is null)
            {
                return null;
            }

            if (inside.Value.Segment == outside.Value.Segment)
            {
                Error(outsideNode, path + ".outside.segment", "the outside segment must differ from the inside segment");
                return null;
            }

            if (!insideTaken.TryAdd(inside.Value.Segment, name))
            {
                Error(insideNode, path + ".inside.segment",
                    $"segment {inside.Value.Segment} already has router {insideTaken[inside.Value.Segment]} on its inside; a LAN has one gateway");
                return null;
            }

            var config = new NatConfig
            {
                Policy = policy,
                InsidePrefixes = [segments[inside.Value.Segment].Prefix],
                ExternalAddresses = outside.Value.Addresses,
                InsideAddress = inside.Value.Addresses[0],
                InsideMtu = (inside.Value.Link ?? segments[inside.Value.Segment].Link).Mtu,
                OutsideMtu = (outside.Value.Link ?? segments[outside.Value.Segment].Link).Mtu,
            };
            foreach (var e in config.Validate())
            {
                Error(natNode ?? node, path + ".nat", e);
            }

            return new RouterSpec(name, presetName, policy, inside.Value.Segment, inside.Value.Addresses[0],
                inside.Value.Link, outside.Value.Segment, outside.Value.Addresses, outside.Value.Link);
        }

        private HostSpec? ReadHost(string name, YamlNode node, string path, Dictionary<string, SegmentSpec> segments,
            Dictionary<(string, uint), string> owners)
        {
            var a = Attachment(node, path, segments, owners, name, single: false, extra: ["gateway"]);
            if (a is null)
            {
                return null;
            }

            Ipv4Address? gateway = null;
            if (node is YamlMappingNode m && m.Children.TryGetValue(new YamlScalarNode("gateway"), out var g))
            {
                gateway = Address(g, path + ".gateway");
                if (gateway is { } gw && !segments[a.Value.Segment].Prefix.Contains(gw))
                {
                    Error(g, path + ".gateway", $"{gw} is not on segment {a.Value.Segment}");
                }
            }

            return new HostSpec(name, a.Value.Segment, a.Value.Addresses, a.Value.Link, gateway);
        }

        private (string Segment, Ipv4Address[] Addresses, LinkProfile? Link)? Attachment(YamlNode node, string path,
            Dictionary<string, SegmentSpec> segments, Dictionary<(string, uint), string> owners, string owner,
            bool single, string[]? extra = null)
        {
            string[] allowed = single ? ["segment", "address", "link"] : ["segment", "address", "addresses", "link"];
            var f = Fields(node, path, extra is null ? allowed : [.. allowed, .. extra]);
            if (f.Count == 0 && node is not YamlMappingNode)
            {
                return null;
            }

            string? segmentName = null;
            if (!f.TryGetValue("segment", out var segNode))
            {
                Error(node, path + ".segment", "missing: the segment this attaches to");
            }
            else
            {
                segmentName = Scalar(segNode, path + ".segment");
                if (segmentName is not null && !segments.ContainsKey(segmentName))
                {
                    Error(segNode, path + ".segment", $"no segment named '{segmentName}' (segments: {string.Join(", ", segments.Keys)})");
                    segmentName = null;
                }
            }

            var addresses = new List<(Ipv4Address, YamlNode)>();
            if (f.TryGetValue("address", out var one))
            {
                if (Address(one, path + ".address") is { } a) addresses.Add((a, one));
            }

            if (f.TryGetValue("addresses", out var many))
            {
                if (many is YamlSequenceNode seq && seq.Children.Count > 0)
                {
                    for (var i = 0; i < seq.Children.Count; i++)
                    {
                        if (Address(seq.Children[i], $"{path}.addresses[{i}]") is { } a) addresses.Add((a, seq.Children[i]));
                    }
                }
                else
                {
                    Error(many, path + ".addresses", "expected a non-empty list of IPv4 addresses");
                }
            }

            if (one is null && many is null)
            {
                Error(node, path + ".address", "missing: an IPv4 address" + (single ? "" : " (or addresses: [...])"));
            }

            var link = f.TryGetValue("link", out var l) ? Link(l, path + ".link") : null;
            if (segmentName is null || addresses.Count == 0)
            {
                return null;
            }

            var prefix = segments[segmentName].Prefix;
            foreach (var (a, n) in addresses)
            {
                if (!prefix.Contains(a))
                {
                    Error(n, path + ".address", $"{a} is not in segment {segmentName} ({prefix.Network}/{prefix.Length})");
                }
                else if (!owners.TryAdd((segmentName, a.Value), owner))
                {
                    Error(n, path + ".address", $"{a} is already used on segment {segmentName} by {owners[(segmentName, a.Value)]}");
                }
            }

            return (segmentName, addresses.Select(x => x.Item1).ToArray(), link);
        }

        private void CheckRouterLoops(List<RouterSpec> routers, YamlNode node)
        {
            // Follow each router's outside segment to the router serving it; a walk longer than the number of
            // routers is a loop (a NAT whose way out leads back to its own inside).
            var byInside = routers.ToDictionary(r => r.InsideSegment, StringComparer.Ordinal);
            foreach (var r in routers)
            {
                var seg = r.OutsideSegment;
                for (var hops = 0; byInside.TryGetValue(seg, out var up); hops++)
                {
                    if (hops > routers.Count)
                    {
                        Error(node, $"routers.{r.Name}.outside.segment", $"routers form a loop through segment {r.OutsideSegment}: there is no way out to a core segment");
                        break;
                    }

                    seg = up.OutsideSegment;
                }
            }
        }

        public NatPolicy? Knobs(NatPolicy policy, YamlNode node, string path)
        {
            if (node is not YamlMappingNode map)
            {
                Error(node, path, "expected a mapping of NAT knobs (mapping, filtering, hairpinning, ...)");
                return null;
            }

            var clone = (NatPolicy)typeof(NatPolicy).GetMethod("<Clone>$")!.Invoke(policy, null)!;
            var ok = true;
            foreach (var (keyNode, value) in map.Children)
            {
                var key = keyNode is YamlScalarNode ks ? ks.Value ?? "" : "";
                var knob = PolicyKnobs.FirstOrDefault(p => Kebab(p.Name) == key);
                var field = Join(path, key);
                if (knob is null)
                {
                    Error(keyNode, field, $"unknown NAT knob '{key}'; known knobs: {string.Join(", ", PolicyKnobs.Select(p => Kebab(p.Name)))}");
                    ok = false;
                    continue;
                }

                var v = KnobValue(knob.PropertyType, value, field);
                if (v is null)
                {
                    ok = false;
                    continue;
                }

                knob.SetValue(clone, v == DBNull.Value ? null : v);
            }

            if (!ok)
            {
                return null;
            }

            foreach (var e in clone.Validate())
            {
                var name = e.Split(':')[0];
                var knobNode = map.Children.FirstOrDefault(c => c.Key is YamlScalarNode k && Kebab(name) == k.Value).Value ?? map;
                Error(knobNode, Join(path, Kebab(name)), InFileWords(e[(name.Length + 1)..].Trim()));
                ok = false;
            }

            return ok ? clone : null;
        }

        /// <summary>A validation message as the file spells things: knob and value names in kebab-case.</summary>
        private static string InFileWords(string message) =>
            System.Text.RegularExpressions.Regex.Replace(message, "\\b[A-Z][a-zA-Z]+\\b", m =>
                PolicyKnobs.Any(p => p.Name == m.Value) || PolicyKnobs.Any(p => p.PropertyType.IsEnum && Enum.GetNames(p.PropertyType).Contains(m.Value))
                    ? Kebab(m.Value)
                    : m.Value);

        private static string Join(string path, string key) => path.Length == 0 ? key : $"{path}.{key}";

        private object? KnobValue(Type type, YamlNode node, string path)
        {
            var nullable = Nullable.GetUnderlyingType(type);
            if (nullable is not null)
            {
                if (node is YamlScalarNode { Value: "null" or "~" or "" }) return DBNull.Value;
                type = nullable;
            }

            if (type == typeof(bool)) return Bool(node, path);
            if (type == typeof(int)) return Int(node, path, int.MinValue, int.MaxValue);
            if (type == typeof(TimeSpan)) return Duration(node, path);
            if (type.IsEnum)
            {
                var text = Scalar(node, path);
                if (text is null) return null;
                foreach (var n in Enum.GetNames(type))
                {
                    if (Kebab(n) == text) return Enum.Parse(type, n);
                }

                Error(node, path, $"'{text}' is not one of {string.Join(", ", Enum.GetNames(type).Select(Kebab))}");
                return null;
            }

            Error(node, path, $"this knob ({type.Name}) cannot be set from a topology file");
            return null;
        }

        private LinkProfile? Link(YamlNode node, string path)
        {
            var f = Fields(node, path, ["latency", "jitter", "loss", "duplicate", "reorder", "reorder-delay", "mtu"]);
            if (node is not YamlMappingNode)
            {
                return null;
            }

            var link = new LinkProfile();
            if (f.TryGetValue("latency", out var n)) link = link with { Latency = Duration(n, path + ".latency") ?? TimeSpan.Zero };
            if (f.TryGetValue("jitter", out n)) link = link with { Jitter = Duration(n, path + ".jitter") ?? TimeSpan.Zero };
            if (f.TryGetValue("reorder-delay", out n)) link = link with { ReorderDelay = Duration(n, path + ".reorder-delay") ?? TimeSpan.Zero };
            if (f.TryGetValue("loss", out n)) link = link with { Loss = Probability(n, path + ".loss") ?? 0 };
            if (f.TryGetValue("duplicate", out n)) link = link with { Duplicate = Probability(n, path + ".duplicate") ?? 0 };
            if (f.TryGetValue("reorder", out n)) link = link with { Reorder = Probability(n, path + ".reorder") ?? 0 };
            if (f.TryGetValue("mtu", out n)) link = link with { Mtu = Int(n, path + ".mtu", 68, 65535) ?? 1500 };
            foreach (var e in link.Validate())
            {
                Error(node, path + "." + e.Split(':')[0], e[(e.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim());
            }

            return link;
        }

        private Dictionary<string, YamlNode> Fields(YamlNode node, string path, string[] allowed)
        {
            var result = new Dictionary<string, YamlNode>(StringComparer.Ordinal);
            if (node is not YamlMappingNode map)
            {
                Error(node, path == "" ? "(root)" : path, $"expected a mapping with {string.Join(", ", allowed)}");
                return result;
            }

            foreach (var (keyNode, value) in map.Children)
            {
                var key = keyNode is YamlScalarNode s ? s.Value ?? "" : "";
                var field = path == "" ? key : $"{path}.{key}";
                if (!allowed.Contains(key))
                {
                    Error(keyNode, field, $"unknown field '{key}'; expected {string.Join(", ", allowed)}");
                }
                else if (!result.TryAdd(key, value))
                {
                    Error(keyNode, field, "given twice");
                }
            }

            return result;
        }

        private IEnumerable<(string Name, YamlNode Node, string Path)> Named(YamlNode node, string path)
        {
            if (node is not YamlMappingNode map)
            {
                Error(node, path, "expected a mapping from names to definitions");
                yield break;
            }

            foreach (var (keyNode, value) in map.Children)
            {
                var name = keyNode is YamlScalarNode s ? s.Value ?? "" : "";
                if (name.Length == 0 || name.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')))
                {
                    Error(keyNode, $"{path}.{name}", "a name uses letters, digits, '-', '_' and '.'");
                    continue;
                }

                yield return (name, value, $"{path}.{name}");
            }
        }

        private string? Scalar(YamlNode node, string path)
        {
            if (node is YamlScalarNode { Value: { } v } && v.Length > 0)
            {
                return v;
            }

            Error(node, path, "expected a single value");
            return null;
        }

        private Ipv4Address? Address(YamlNode node, string path)
        {
            var s = Scalar(node, path);
            if (s is null) return null;
            if (Ipv4Address.TryParse(s, out var a)) return a;
            Error(node, path, $"'{s}' is not an IPv4 address");
            return null;
        }

        private Ipv4Prefix? Prefix(YamlNode node, string path)
        {
            var s = Scalar(node, path);
            if (s is null) return null;
            if (Ipv4Prefix.TryParse(s, out var p)) return p;
            Error(node, path, $"'{s}' is not an IPv4 prefix (a.b.c.d/n with no host bits set)");
            return null;
        }

        private int? Int(YamlNode node, string path, int min, int max)
        {
            var s = Scalar(node, path);
            if (s is null) return null;
            if (int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) && v >= min && v <= max) return v;
            Error(node, path, $"'{s}' is not a whole number between {min} and {max}");
            return null;
        }

        private bool? Bool(YamlNode node, string path)
        {
            var s = Scalar(node, path);
            if (s is null) return null;
            if (s is "true" or "yes" or "on") return true;
            if (s is "false" or "no" or "off") return false;
            Error(node, path, $"'{s}' is not true or false");
            return null;
        }

        private double? Probability(YamlNode node, string path)
        {
            var s = Scalar(node, path);
            if (s is null) return null;
            var percent = s.EndsWith('%');
            if (double.TryParse(percent ? s[..^1] : s, NumberStyles.Float, CultureInfo.InvariantCulture, out var v))
            {
                if (percent) v /= 100;
                if (v is >= 0 and <= 1) return v;
            }

            Error(node, path, $"'{s}' is not a probability (0 to 1, or 0% to 100%)");
            return null;
        }

        private TimeSpan? Duration(YamlNode node, string path)
        {
            var s = Scalar(node, path);
            if (s is null) return null;
            if (LabDuration.TryParse(s, out var d)) return d;
            Error(node, path, $"'{s}' is not a duration (a number with a unit: 250us, 20ms, 1.5s, 5m, 2h)");
            return null;
        }

        private T Missing<T>(YamlNode node, string path, string what)
        {
            Error(node, path, $"missing: {what}");
            return default!;
        }

        private void Error(YamlNode node, string path, string problem) =>
            Errors.Add(new TopologyError(file, (int)node.Start.Line, (int)node.Start.Column, path, problem));
    }
}

/// <summary>Durations as topology files and the CLI write them: a number and a unit (us, ms, s, m, h).</summary>
public static class LabDuration
{
    public static bool TryParse(string text, out TimeSpan duration)
    {
        duration = default;
        if (string.IsNullOrWhiteSpace(text)) return false;
        text = text.Trim();
        (string Unit, double Ticks)[] units = [("us", 10), ("ms", TimeSpan.TicksPerMillisecond), ("s", TimeSpan.TicksPerSecond),
            ("m", TimeSpan.TicksPerMinute), ("h", TimeSpan.TicksPerHour)];
        foreach (var (unit, ticks) in units.OrderByDescending(u => u.Unit.Length))
        {
            if (text.EndsWith(unit, StringComparison.Ordinal) &&
                double.TryParse(text[..^unit.Length], NumberStyles.Float, CultureInfo.InvariantCulture, out var v) &&
                v >= 0 && v * ticks < long.MaxValue)
            {
                duration = TimeSpan.FromTicks((long)(v * ticks));
                return true;
            }
        }

        return false;
    }
}

/// <summary>Topologies that ship inside the library (docs/lab.md shows them).</summary>
public static class BuiltInTopologies
{
    /// <summary>Names of the embedded topologies.</summary>
    public static IReadOnlyList<string> Names { get; } = ["two-homes"];

    /// <summary>The YAML text of an embedded topology.</summary>
    public static string Text(string name)
    {
        using var stream = typeof(BuiltInTopologies).Assembly.GetManifestResourceStream($"NatKit.Lab.Topology.{name}.yaml")
            ?? throw new KeyNotFoundException($"no built-in topology '{name}' (known: {string.Join(", ", Names)})");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    /// <summary>Parses an embedded topology.</summary>
    public static TopologySpec Load(string name) => TopologyLoader.Parse(Text(name), $"(built-in) {name}.yaml");
}
