using System.Net;
using System.Text.Json;
using NatKit.Traversal.Identity;
using NatKit.Traversal.Peer;

namespace NatKit.Traversal.Tests.Peer;

/// <summary>A node's config file (docs/peer.md's example included) and the status records `natkit peer status`
/// prints.</summary>
public sealed class PeerConfigTests : IDisposable
{
    private const string Bob = "klagyk5fkfrvyk3l2t26sfwlxdxiqyar";
    private readonly string _dir = Directory.CreateTempSubdirectory("natkit-peerconfig-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string? NoEnvironment(string name) => null;

    private static PeerConfig Parse(string text, Func<string, string?>? environment = null) =>
        PeerConfigFile.Parse(text, environment ?? NoEnvironment);

    /// <summary>The first ```yaml block of docs/peer.md's `natkit peer` section.</summary>
    private static string DocsExample()
    {
        var doc = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "docs", "peer.md"));
        var section = doc[doc.IndexOf("## `natkit peer`", StringComparison.Ordinal)..];
        var start = section.IndexOf("```yaml\n", StringComparison.Ordinal) + "```yaml\n".Length;
        return section[start..section.IndexOf("```", start, StringComparison.Ordinal)];
    }

    [Fact]
    public void TheDocsExample_Parses_ToWhatItsCommentsSay()
    {
        var c = Parse(DocsExample(), name => name == "NATKIT_TURN_PASSWORD" ? "s3cret" : null);
        Assert.Equal("/etc/natkit/alice.pem", c.Key);
        Assert.Equal("alice", c.Name);
        Assert.Equal(PeerNetworkOptions.DefaultListen, c.Listen);
        Assert.Equal(IPEndPoint.Parse("203.0.113.10:3478"), c.Rendezvous);
        Assert.Equal([IPEndPoint.Parse("203.0.113.10:3478"), IPEndPoint.Parse("203.0.113.11:3478")], c.Stun);
        var bob = NodeId.Parse(Bob);
        Assert.Equal(bob, Assert.Single(c.Peers).Id);
        Assert.Equal("bob", c.Peers[0].Name);
        var web = Assert.Single(c.Expose);
        Assert.Equal(("web", IPEndPoint.Parse("127.0.0.1:8080")), (web.Name, web.Target));
        Assert.Equal([bob], web.Peers!);
        var ssh = Assert.Single(c.Forward);
        Assert.Equal((IPEndPoint.Parse("127.0.0.1:2222"), bob, "ssh"), (ssh.Listen, ssh.Peer, ssh.Service));
        Assert.True(c.KnownPeersOnly);
        Assert.Equal("/run/natkit/alice.peer.sock", c.ControlPath(NoEnvironment));

        var options = c.ToOptions(name => name == "NATKIT_TURN_PASSWORD" ? "s3cret" : null);
        Assert.Equal(new TurnServerCredentials(IPEndPoint.Parse("203.0.113.20:3478"), "alice", "s3cret"), options.Traversal.Turn);
        Assert.Same(options, options.Validate());
    }

    [Fact]
    public void TheSameConfigAsJson_ReadsTheSame_AndDefaultsFillTheRest()
    {
        var c = Parse($$"""{"rendezvous": "[2001:db8::10]", "peers": [{"id": "{{Bob}}", "address": "198.51.100.2"}], "forward": [{"listen": "[::1]:0", "peer": "{{Bob}}", "service": "web"}]}""",
            name => name == "XDG_CONFIG_HOME" ? "/home/u/.cfg" : name == "XDG_RUNTIME_DIR" ? "/run/user/1000" : null);
        Assert.Equal(new IPEndPoint(IPAddress.Parse("2001:db8::10"), 3478), c.Rendezvous);
        Assert.Equal("/home/u/.cfg/natkit/peer.pem", c.Key);
        Assert.Equal("peer", c.Name);
        Assert.Equal("/run/user/1000/natkit/peer.peer.sock", c.ControlPath(n => n == "XDG_RUNTIME_DIR" ? "/run/user/1000" : null));
        Assert.Null(c.Turn);
        // the peer's address makes the forward dial its node straight (default port 1315)
        Assert.Equal(IPEndPoint.Parse("198.51.100.2:1315"), c.ToOptions(NoEnvironment).Forward[0].Address);
    }

    public static TheoryData<string, string> Mistakes => new()
    {
        { "rendezvous: 203.0.113.10\nbogus: 1", "line 2: bogus: unknown key 'bogus'; keys here are key, name, listen," },
        { "rendezvous: 203.0.113.10\nturn: {server: 203.0.113.20, user: a, password: x}", "line 2: turn.password: unknown key 'password'" },
        { "listen: 0.0.0.0:1315", "rendezvous: missing" },
        { "rendezvous: localhost:3478", "line 1: rendezvous: localhost:3478: 'localhost' is not an IP address" },
        { "rendezvous: 203.0.113.10:99999", "line 1: rendezvous: 203.0.113.10:99999: port 99999 is out of range" },
        { "rendezvous: 203.0.113.10\nexpose: [{name: web, target: 127.0.0.1}]", "expose[0].target: 127.0.0.1: give a port" },
        { "rendezvous: 203.0.113.10\nforward: [{listen: 127.0.0.1:22, peer: carol, service: ssh}]", "forward[0].peer: 'carol' is neither a node id nor the name of a peer under peers (none is listed)" },
        { "rendezvous: 203.0.113.10\nforward: [{listen: 127.0.0.1:22, service: ssh}]", "forward[0].peer: missing" },
        { "rendezvous: 203.0.113.10\npeers: [{id: nope}]", "line 2: peers[0].id: 'nope' is not a node id" },
        { $"rendezvous: 203.0.113.10\npeers: [{{id: {Bob}}}, {{id: {Bob}}}]", "peers[1]: peer " },
        { "rendezvous: 203.0.113.10\nturn: {server: 203.0.113.20, user: a}", "turn: give the password with password-file: FILE or password-env: VARIABLE" },
        { "rendezvous: 203.0.113.10\nknown-peers-only: maybe", "known-peers-only: 'maybe' is not true or false" },
        { "rendezvous: 203.0.113.10\nname: ../etc", "name: '../etc' must be 1 to 64 letters" },
        { "rendezvous: 203.0.113.10\nexpose: [{name: web, target: 127.0.0.1:80}, {name: web, target: 127.0.0.1:81}]", "expose[1].name: service web is exposed twice" },
        { "{\"rendezvous\": ", "(syntax): not valid YAML or JSON" },
        { "- a\n- b", "(file): expected a mapping" },
    };

    [Theory]
    [MemberData(nameof(Mistakes))]
    public void AMistake_IsRefused_NamingItsKey(string text, string expected)
    {
        var e = Assert.Throws<PeerConfigException>(() => Parse(text));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheTurnPassword_ComesFromItsFileOrVariable_AndAMissingOneNamesTheKey()
    {
        var file = Path.Combine(_dir, "turn-password");
        File.WriteAllText(file, "from-file\nignored\n");
        var c = Parse($"rendezvous: 203.0.113.10\nturn: {{server: 203.0.113.20, user: a, password-file: {file}}}");
        Assert.Equal("from-file", c.ToOptions(NoEnvironment).Traversal.Turn!.Password);

        var missing = c with { Turn = c.Turn! with { PasswordFile = Path.Combine(_dir, "none") } };
        Assert.StartsWith("turn.password-file: ", Assert.Throws<PeerConfigException>(() => missing.ToOptions(NoEnvironment)).Message, StringComparison.Ordinal);

        var env = Parse("rendezvous: 203.0.113.10\nturn: {server: 203.0.113.20, user: a, password-env: TURN_PW}");
        Assert.Equal("from-env", env.ToOptions(n => n == "TURN_PW" ? "from-env" : null).Traversal.Turn!.Password);
        Assert.Equal("turn.password-env: the environment variable TURN_PW is not set",
            Assert.Throws<PeerConfigException>(() => env.ToOptions(NoEnvironment)).Message);
    }

    [Fact]
    public void StatusRecords_AreNamed_AndReadBackEqual()
    {
        var bob = NodeId.Parse(Bob);
        using var alice = NodeIdentity.Create();
        var status = new PeerNetworkStatus(alice.Id, "alice", IPEndPoint.Parse("0.0.0.0:1315"), IPEndPoint.Parse("198.51.100.1:40000"),
            "symmetric", IPEndPoint.Parse("203.0.113.20:50000"),
            [new PeerLinkInfo(bob, PathKind.Relay, TraversalMethod.Relay, IPEndPoint.Parse("203.0.113.20:50001"), TimeSpan.FromMilliseconds(1.5), true)],
            [new PipeInfo(7, bob, PipeKind.Forward, "web", PathKind.Relay, 100, 2_000_000, TimeSpan.FromSeconds(3))],
            [new PortForward(IPEndPoint.Parse("127.0.0.1:8080"), bob, "web")],
            [new ExposedService("ssh", IPEndPoint.Parse("127.0.0.1:22")) { Peers = [bob] }]);
        var records = PeerStatusReport.From(status, [new PeerInfo(bob) { Name = "bob" }]);
        var json = PeerStatusReport.ToJson(records);

        using var doc = JsonDocument.Parse(json);
        Assert.Equal(["node", "peer", "pipe", "forward", "expose"],
            doc.RootElement.EnumerateArray().Select(r => r.GetProperty("record").GetString()));
        var peer = doc.RootElement[1];
        Assert.Equal("relay", peer.GetProperty("path").GetString());
        Assert.Equal("bob", peer.GetProperty("name").GetString());
        var pipe = doc.RootElement[2];
        Assert.Equal(2_000_000, pipe.GetProperty("bytesFromPeer").GetInt64());
        Assert.Equal("forward", pipe.GetProperty("kind").GetString());
        Assert.Equal(["bob"], doc.RootElement[4].GetProperty("peers").EnumerateArray().Select(p => p.GetString()));

        var back = PeerStatusReport.FromJson(json);
        Assert.Equal(records.Take(4), back.Take(4)); // records with lists compare by reference; the JSON says the rest
        Assert.Equal(json, PeerStatusReport.ToJson(back));
    }

    [Fact]
    public void APeerNotInTheConfig_ButLinked_IsListedAsUnknown_AndAKnownOneWithoutALinkAsNotConnected()
    {
        using var alice = NodeIdentity.Create();
        using var stranger = NodeIdentity.Create();
        var bob = NodeId.Parse(Bob);
        var status = new PeerNetworkStatus(alice.Id, null, IPEndPoint.Parse("0.0.0.0:1315"), null, "unknown", null,
            [new PeerLinkInfo(stranger.Id, PathKind.Direct, TraversalMethod.Reflexive, IPEndPoint.Parse("198.51.100.9:4000"), TimeSpan.Zero, false)],
            [], [], []);
        var peers = PeerStatusReport.From(status, [new PeerInfo(bob)]).OfType<PeerStatusPeer>().ToList();
        Assert.Equal(2, peers.Count);
        Assert.Equal((Bob, true, (string?)null), (peers[0].Id, peers[0].Known, peers[0].Path));
        Assert.Equal((stranger.Id.ToString(), false, "direct", "reflexive"), (peers[1].Id, peers[1].Known, peers[1].Path, peers[1].Method));
    }
}
