using System.Net;
using NatKit.Traversal.Identity;

namespace NatKit.Traversal.Peer;

/// <summary>A TURN relay for a node, its password kept out of the config and the process list: read from a file
/// or an environment variable when the node starts.</summary>
/// <param name="Server">The TURN server's UDP endpoint.</param>
/// <param name="Username">The long-term credential's user name.</param>
public sealed record PeerTurnConfig(IPEndPoint Server, string Username)
{
    /// <summary>A file whose first line is the password.</summary>
    public string? PasswordFile { get; init; }

    /// <summary>An environment variable holding the password.</summary>
    public string? PasswordEnv { get; init; }
}

/// <summary>
/// What `natkit peer run` reads from its config file (<see cref="PeerConfigFile"/>, keys in kebab-case named like
/// flags): the node's key file and name, the UDP endpoint, the rendezvous, STUN and TURN servers, the known peers,
/// the exposed services and the forwarded ports. <see cref="ToOptions"/> turns it into the module's options.
/// </summary>
public sealed record PeerConfig
{
    /// <summary>The node's name in tables, logs and the control socket's file name.</summary>
    public const string DefaultName = "peer";

    /// <summary>The node's key (a PEM file `natkit peer init` wrote, owner-only).</summary>
    public required string Key { get; init; }

    /// <summary>The node's name in tables and logs, and its control socket's name.</summary>
    public string Name { get; init; } = DefaultName;

    /// <summary>The UDP endpoint the uTP server binds and the traversal shares.</summary>
    public IPEndPoint Listen { get; init; } = PeerNetworkOptions.DefaultListen;

    /// <summary>The rendezvous service (it answers STUN Binding too).</summary>
    public required IPEndPoint Rendezvous { get; init; }

    /// <summary>STUN servers that profile the NAT (the rendezvous alone when empty).</summary>
    public IReadOnlyList<IPEndPoint> Stun { get; init; } = [];

    /// <summary>The relay for when nothing direct works; null: none.</summary>
    public PeerTurnConfig? Turn { get; init; }

    /// <summary>The nodes this node knows (by id; the name is for people).</summary>
    public IReadOnlyList<PeerInfo> Peers { get; init; } = [];

    /// <summary>Where each known peer's node listens, when it is known (a forward then dials it straight).</summary>
    public IReadOnlyDictionary<NodeId, IPEndPoint> PeerAddresses { get; init; } = new Dictionary<NodeId, IPEndPoint>();

    /// <summary>Local services peers may reach.</summary>
    public IReadOnlyList<ExposedService> Expose { get; init; } = [];

    /// <summary>Local ports piped to peers' services.</summary>
    public IReadOnlyList<PortForward> Forward { get; init; } = [];

    /// <summary>Let in only the known peers (on by default).</summary>
    public bool KnownPeersOnly { get; init; } = true;

    /// <summary>The keys of the program that runs the node (log-level, log-format, metrics-listen, drain-timeout), as
    /// text: the module does not read them; `natkit peer run` takes each as its flag of the same name, which wins when
    /// given on the command line.</summary>
    public IReadOnlyDictionary<string, string> ProgramKeys { get; init; } = new Dictionary<string, string>();

    /// <summary>The control socket `natkit peer status` asks; null: <see cref="DefaultControlPath"/> of the name.</summary>
    public string? Control { get; init; }

    /// <summary>The control socket this config's node listens on.</summary>
    public string ControlPath(Func<string, string?> environment) => Control ?? DefaultControlPath(Name, environment);

    /// <summary><c>$XDG_RUNTIME_DIR/natkit/NAME.peer.sock</c>, or <c>/run/natkit/NAME.peer.sock</c> without it.</summary>
    public static string DefaultControlPath(string name, Func<string, string?> environment)
    {
        ArgumentNullException.ThrowIfNull(environment);
        var runtime = environment("XDG_RUNTIME_DIR") is { Length: > 0 } r ? Path.Combine(r, "natkit") : "/run/natkit";
        return Path.Combine(runtime, name + ".peer.sock");
    }

    /// <summary><c>$XDG_CONFIG_HOME/natkit/peer.pem</c>, or <c>~/.config/natkit/peer.pem</c>.</summary>
    public static string DefaultKeyPath(Func<string, string?> environment)
    {
        ArgumentNullException.ThrowIfNull(environment);
        var config = environment("XDG_CONFIG_HOME") is { Length: > 0 } c
            ? c
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".config");
        return Path.Combine(config, "natkit", "peer.pem");
    }

    /// <summary>The module's options, with the TURN password read from its file or variable.</summary>
    /// <exception cref="PeerConfigException">The TURN password cannot be read (the key names where it was looked
    /// for).</exception>
    public PeerNetworkOptions ToOptions(Func<string, string?> environment)
    {
        ArgumentNullException.ThrowIfNull(environment);
        TurnServerCredentials? turn = null;
        if (Turn is { } t)
        {
            turn = new TurnServerCredentials(t.Server, t.Username, TurnPassword(t, environment));
        }

        var forward = new List<PortForward>(Forward.Count);
        foreach (var f in Forward)
        {
            forward.Add(f.Address is null && PeerAddresses.TryGetValue(f.Peer, out var a) ? f with { Address = a } : f);
        }

        return new PeerNetworkOptions
        {
            Listen = Listen,
            Traversal = new TraversalOptions { Rendezvous = Rendezvous, StunServers = Stun, Turn = turn },
            KnownPeersOnly = KnownPeersOnly,
            Expose = Expose,
            Forward = forward,
        };
    }

    private static string TurnPassword(PeerTurnConfig turn, Func<string, string?> environment)
    {
        if (turn.PasswordFile is { } file)
        {
            string? line;
            try
            {
                line = File.ReadLines(file).FirstOrDefault();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new PeerConfigException(0, "turn.password-file", $"{file} cannot be read ({e.Message.TrimEnd('.')})");
            }

            return line is { Length: > 0 }
                ? line.TrimEnd('\r')
                : throw new PeerConfigException(0, "turn.password-file", $"{file} holds no password on its first line");
        }

        var name = turn.PasswordEnv!;
        return environment(name) is { Length: > 0 } value
            ? value
            : throw new PeerConfigException(0, "turn.password-env", $"the environment variable {name} is not set");
    }
}

/// <summary>A config file mistake: the key (a path like <c>forward[0].peer</c>), its line (0: not from a line of
/// the file) and what would be right.</summary>
public sealed class PeerConfigException : FormatException
{
    public PeerConfigException(int line, string key, string problem)
        : base(line > 0 ? $"line {line}: {key}: {problem}" : $"{key}: {problem}")
    {
        Line = line;
        Key = key;
    }

    public PeerConfigException()
    {
        Key = "";
    }

    public PeerConfigException(string message)
        : base(message)
    {
        Key = "";
    }

    public PeerConfigException(string message, Exception innerException)
        : base(message, innerException)
    {
        Key = "";
    }

    /// <summary>The file's line (1-based), 0 when the mistake is not on a line.</summary>
    public int Line { get; }

    /// <summary>The key, as a path into the file.</summary>
    public string Key { get; }
}
