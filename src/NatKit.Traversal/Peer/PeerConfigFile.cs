using System.Net;
using NatKit.Net;
using NatKit.Traversal.Identity;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace NatKit.Traversal.Peer;

/// <summary>
/// Reads a node's config (YAML, or JSON, which is read as the YAML subset it is) into a <see cref="PeerConfig"/>.
/// Keys are kebab-case and named like flags; see docs/peer.md for an example. A mistake (an unknown key, a bad
/// address, a peer named nowhere) is a <see cref="PeerConfigException"/> naming the line and the key as a path
/// (<c>forward[0].peer</c>).
/// </summary>
public static class PeerConfigFile
{
    /// <summary>Keys the program running the node reads as its flags of the same names (<see cref="PeerConfig.ProgramKeys"/>).</summary>
    public static readonly IReadOnlyList<string> ProgramKeys = ["log-level", "log-format", "metrics-listen", "drain-timeout"];

    /// <summary>The top-level keys.</summary>
    public static readonly IReadOnlyList<string> Keys =
        ["key", "name", "listen", "rendezvous", "stun", "turn", "peers", "expose", "forward", "known-peers-only", "control",
         .. ProgramKeys];

    private static readonly string[] TurnKeys = ["server", "user", "password-file", "password-env"];
    private static readonly string[] PeerKeys = ["id", "name", "address"];
    private static readonly string[] ExposeKeys = ["name", "target", "peers"];
    private static readonly string[] ForwardKeys = ["listen", "peer", "service", "address"];

    /// <summary>The default rendezvous (and STUN, TURN) port.</summary>
    private const int ServicePort = 3478;

    /// <summary>Reads a config file.</summary>
    /// <exception cref="IOException">The file cannot be read.</exception>
    /// <exception cref="PeerConfigException">The file is not a valid config.</exception>
    public static PeerConfig Load(string path, Func<string, string?> environment)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new IOException(e.Message, e);
        }

        return Parse(text, environment);
    }

    /// <summary>Parses config text. <paramref name="environment"/> gives the default key path's variables.</summary>
    /// <exception cref="PeerConfigException">The text is not a valid config.</exception>
    public static PeerConfig Parse(string text, Func<string, string?> environment)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(environment);
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(text.Replace('\t', ' ')));
        }
        catch (YamlException e)
        {
            throw new PeerConfigException((int)e.Start.Line, "(syntax)", $"not valid YAML or JSON ({e.Message.TrimEnd('.')})");
        }

        if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is not YamlMappingNode root)
        {
            throw new PeerConfigException(1, "(file)", "expected a mapping of keys to values, like rendezvous: 203.0.113.10:3478");
        }

        var keys = Mapping(root, "", Keys);
        var name = keys.TryGetValue("name", out var n) ? Scalar(n, "name") : PeerConfig.DefaultName;
        if (name.Length is 0 or > 64 || name.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')) || name[0] == '.')
        {
            throw Error(n!, "name", $"'{name}' must be 1 to 64 letters, digits, '-', '_' or '.' (it names the control socket)");
        }

        if (!keys.TryGetValue("rendezvous", out var rendezvous))
        {
            throw new PeerConfigException(Line(root), "rendezvous", "missing; give the rendezvous service's ADDRESS[:PORT]");
        }

        var peers = new List<PeerInfo>();
        var addresses = new Dictionary<NodeId, IPEndPoint>();
        if (keys.TryGetValue("peers", out var peersNode))
        {
            var i = 0;
            foreach (var item in Sequence(peersNode, "peers"))
            {
                var at = $"peers[{i++}]";
                var p = Mapping(item, at, PeerKeys);
                if (!p.TryGetValue("id", out var idNode))
                {
                    throw Error(item, at + ".id", "missing; give the peer's node id (`natkit peer init` prints it)");
                }

                var idText = Scalar(idNode, at + ".id");
                if (!NodeId.TryParse(idText, out var id))
                {
                    throw Error(idNode, at + ".id", $"'{idText}' is not a node id ({NodeId.TextLength} characters, as `natkit peer init` prints it)");
                }

                var peerName = p.TryGetValue("name", out var pn) ? Scalar(pn, at + ".name") : null;
                if (peers.Any(x => x.Id == id) || (peerName is not null && peers.Any(x => x.Name == peerName)))
                {
                    throw Error(item, at, $"peer {peerName ?? idText} is listed twice");
                }

                peers.Add(new PeerInfo(id) { Name = peerName });
                if (p.TryGetValue("address", out var address))
                {
                    addresses[id] = EndPoint(address, at + ".address", PeerNetworkOptions.DefaultListen.Port);
                }
            }
        }

        var expose = new List<ExposedService>();
        if (keys.TryGetValue("expose", out var exposeNode))
        {
            var i = 0;
            foreach (var item in Sequence(exposeNode, "expose"))
            {
                var at = $"expose[{i++}]";
                var e = Mapping(item, at, ExposeKeys);
                var service = ServiceName(Required(e, item, at, "name", "the name peers ask for"), at + ".name");
                var target = EndPoint(Required(e, item, at, "target", "the local service's ADDRESS:PORT"), at + ".target", -1);
                IReadOnlyList<NodeId>? allowed = null;
                if (e.TryGetValue("peers", out var allowedNode))
                {
                    var list = new List<NodeId>();
                    var j = 0;
                    foreach (var who in Sequence(allowedNode, at + ".peers"))
                    {
                        list.Add(PeerRef(who, $"{at}.peers[{j++}]", peers));
                    }

                    allowed = list;
                }

                if (expose.Any(x => x.Name == service))
                {
                    throw Error(item, at + ".name", $"service {service} is exposed twice");
                }

                expose.Add(new ExposedService(service, target) { Peers = allowed });
            }
        }

        var forward = new List<PortForward>();
        if (keys.TryGetValue("forward", out var forwardNode))
        {
            var i = 0;
            foreach (var item in Sequence(forwardNode, "forward"))
            {
                var at = $"forward[{i++}]";
                var f = Mapping(item, at, ForwardKeys);
                var listen = EndPoint(Required(f, item, at, "listen", "the local TCP ADDRESS:PORT to listen on"), at + ".listen", -1);
                var peer = PeerRef(Required(f, item, at, "peer", "the name or node id of the peer that exposes the service"), at + ".peer", peers);
                var service = ServiceName(Required(f, item, at, "service", "the service's name on that peer"), at + ".service");
                forward.Add(new PortForward(listen, peer, service)
                {
                    Address = f.TryGetValue("address", out var a) ? EndPoint(a, at + ".address", PeerNetworkOptions.DefaultListen.Port) : null,
                });
            }
        }

        var stun = new List<IPEndPoint>();
        if (keys.TryGetValue("stun", out var stunNode))
        {
            var nodes = stunNode is YamlSequenceNode ? Sequence(stunNode, "stun") : [stunNode];
            var i = 0;
            foreach (var s in nodes)
            {
                stun.Add(EndPoint(s, stunNode is YamlSequenceNode ? $"stun[{i++}]" : "stun", ServicePort));
            }
        }

        var program = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var programKey in ProgramKeys)
        {
            if (keys.TryGetValue(programKey, out var v))
            {
                program[programKey] = Scalar(v, programKey);
            }
        }

        return new PeerConfig
        {
            ProgramKeys = program,
            Key = keys.TryGetValue("key", out var key) ? Scalar(key, "key") : PeerConfig.DefaultKeyPath(environment),
            Name = name,
            Listen = keys.TryGetValue("listen", out var l) ? EndPoint(l, "listen", PeerNetworkOptions.DefaultListen.Port) : PeerNetworkOptions.DefaultListen,
            Rendezvous = EndPoint(rendezvous, "rendezvous", ServicePort),
            Stun = stun,
            Turn = keys.TryGetValue("turn", out var turn) ? Turn(turn) : null,
            Peers = peers,
            PeerAddresses = addresses,
            Expose = expose,
            Forward = forward,
            KnownPeersOnly = !keys.TryGetValue("known-peers-only", out var k) || Bool(k, "known-peers-only"),
            Control = keys.TryGetValue("control", out var control) ? Scalar(control, "control") : null,
        };
    }

    private static PeerTurnConfig Turn(YamlNode node)
    {
        var t = Mapping(node, "turn", TurnKeys);
        var server = EndPoint(Required(t, node, "turn", "server", "the TURN server's ADDRESS[:PORT]"), "turn.server", ServicePort);
        var user = Scalar(Required(t, node, "turn", "user", "the TURN user name"), "turn.user");
        var file = t.TryGetValue("password-file", out var f) ? Scalar(f, "turn.password-file") : null;
        var env = t.TryGetValue("password-env", out var e) ? Scalar(e, "turn.password-env") : null;
        if ((file is null) == (env is null))
        {
            throw Error(node, "turn", "give the password with password-file: FILE or password-env: VARIABLE (one of them; never the password itself)");
        }

        return new PeerTurnConfig(server, user) { PasswordFile = file, PasswordEnv = env };
    }

    private static NodeId PeerRef(YamlNode node, string at, List<PeerInfo> peers)
    {
        var text = Scalar(node, at);
        foreach (var p in peers)
        {
            if (p.Name == text)
            {
                return p.Id;
            }
        }

        if (NodeId.TryParse(text, out var id))
        {
            return id;
        }

        var names = peers.Where(p => p.Name is not null).Select(p => p.Name).ToList();
        throw Error(node, at, $"'{text}' is neither a node id nor the name of a peer under peers" +
                              (names.Count > 0 ? $" ({string.Join(", ", names)})" : " (none is listed)"));
    }

    private static string ServiceName(YamlNode node, string at)
    {
        var name = Scalar(node, at);
        return name.Length > 0 && System.Text.Encoding.UTF8.GetByteCount(name) <= PeerNetworkOptions.MaxServiceName
            ? name
            : throw Error(node, at, $"a service name is 1 to {PeerNetworkOptions.MaxServiceName} bytes");
    }

    /// <summary>An endpoint; <paramref name="defaultPort"/> -1: the port must be given.</summary>
    private static IPEndPoint EndPoint(YamlNode node, string at, int defaultPort)
    {
        var text = Scalar(node, at);
        if (EndPointText.TryParse(text, Math.Max(defaultPort, 0), out var endPoint) is { } problem)
        {
            throw Error(node, at, $"{text}: {problem}");
        }

        if (defaultPort < 0 && endPoint!.Port == 0 && !text.EndsWith(":0", StringComparison.Ordinal))
        {
            throw Error(node, at, $"{text}: give a port, like {new IPEndPoint(endPoint.Address, 8080)}");
        }

        return endPoint!;
    }

    private static bool Bool(YamlNode node, string at) => Scalar(node, at) switch
    {
        "true" or "yes" => true,
        "false" or "no" => false,
        var v => throw Error(node, at, $"'{v}' is not true or false"),
    };

    private static YamlNode Required(Dictionary<string, YamlNode> map, YamlNode parent, string at, string key, string what) =>
        map.TryGetValue(key, out var node) ? node : throw Error(parent, $"{at}.{key}", $"missing; give {what}");

    private static Dictionary<string, YamlNode> Mapping(YamlNode node, string at, IReadOnlyList<string> known)
    {
        if (node is not YamlMappingNode map)
        {
            throw Error(node, at.Length == 0 ? "(file)" : at, $"expected a mapping with keys {string.Join(", ", known)}");
        }

        var result = new Dictionary<string, YamlNode>(StringComparer.Ordinal);
        foreach (var (k, v) in map.Children)
        {
            var key = (k as YamlScalarNode)?.Value ?? "";
            var path = at.Length == 0 ? key : $"{at}.{key}";
            if (!known.Contains(key))
            {
                throw Error(k, path, $"unknown key '{key}'; keys here are {string.Join(", ", known)}");
            }

            if (!result.TryAdd(key, v))
            {
                throw Error(k, path, "given twice");
            }
        }

        return result;
    }

    private static IEnumerable<YamlNode> Sequence(YamlNode node, string at) =>
        node as YamlSequenceNode ?? throw Error(node, at, "expected a list");

    private static string Scalar(YamlNode node, string at) =>
        node is YamlScalarNode { Value: { } v } ? v.Trim() : throw Error(node, at, "expected a single value");

    private static int Line(YamlNode node) => (int)Math.Min(node.Start.Line, int.MaxValue);

    private static PeerConfigException Error(YamlNode node, string key, string problem) =>
        new(Line(node), key, problem);
}
