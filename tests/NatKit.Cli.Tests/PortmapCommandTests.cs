using System.Net;
using System.Text.Json;
using NatKit.Linux;
using NatKit.Nat;
using NatKit.Net;
using NatKit.Packets;
using NatKit.PortMapping;

namespace NatKit.Cli.Tests;

/// <summary>`natkit portmap`: help, one-sentence refusals, and probe/add/delete against a NAT-PMP/PCP server on
/// loopback (a <see cref="PortMappingHandler"/> over a real UDP socket), with --json parsed back.</summary>
public sealed class PortmapCommandTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    private static string Natkit => Path.Combine(AppContext.BaseDirectory, "natkit.dll");

    private static Task<(int ExitCode, string Output, string Errors)> Cli(params string[] arguments) =>
        ExternalProcess.RunAsync("dotnet", [Natkit, .. arguments], Deadline);

    /// <summary>A port mapping server on 127.0.0.1 for a NAT whose inside is loopback and outside 203.0.113.1.</summary>
    private sealed class LoopbackServer : IAsyncDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private readonly IDatagramSocket _socket;
        private readonly Task _loop;

        private LoopbackServer(IDatagramSocket socket, NatEngine engine)
        {
            _socket = socket;
            Engine = engine;
            var handler = new PortMappingHandler(engine, Now());
            _loop = Task.Run(async () =>
            {
                var buffer = new byte[2048];
                var reply = new byte[PortMappingHandler.MaxReplyLength];
                while (true)
                {
                    ReceivedDatagram d;
                    try
                    {
                        d = await _socket.ReceiveFromAsync(buffer, _stop.Token);
                    }
                    catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
                    {
                        return;
                    }

                    int n;
                    lock (engine)
                    {
                        n = handler.Handle(buffer.AsSpan(0, d.Length),
                            new NatEndpoint(Ipv4Address.FromIPAddress(d.RemoteEndPoint.Address), (ushort)d.RemoteEndPoint.Port), Now(), reply);
                    }

                    if (n > 0) await _socket.SendToAsync(reply.AsMemory(0, n), d.RemoteEndPoint);
                }
            });
        }

        public NatEngine Engine { get; }

        public string Gateway => _socket.LocalEndPoint.ToString();

        public static async Task<LoopbackServer> StartAsync()
        {
            var engine = new NatEngine(new NatConfig
            {
                Policy = NatPresets.FullCone,
                InsidePrefixes = [Ipv4Prefix.Parse("127.0.0.0/8")],
                ExternalAddresses = [Ipv4Address.Parse("203.0.113.1")],
            }, Now());
            return new LoopbackServer(await SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, 0)), engine);
        }

        private static long Now() => TimeProvider.System.GetTimestamp() * 1000 / TimeProvider.System.TimestampFrequency;

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            await _loop;
            await _socket.DisposeAsync();
            Engine.Dispose();
            _stop.Dispose();
        }
    }

    [Fact]
    public async Task Help_ListsTheFourVerbs()
    {
        var (code, output, _) = await Cli("portmap", "--help");
        Assert.Equal(0, code);
        foreach (var verb in new[] { "probe", "add", "delete", "list" }) Assert.Contains(verb, output, StringComparison.Ordinal);
        (code, output, _) = await Cli("portmap", "add", "--help");
        Assert.Equal(0, code);
        Assert.Contains("--external-port", output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--port", "70000", "--port 70000: not a port")]
    [InlineData("--port", "0", "--port 0: not a port")]
    [InlineData("--transport", "sctp", "--transport sctp: expected udp or tcp")]
    [InlineData("--protocol", "upnp2", "--protocol upnp2: expected pcp or nat-pmp")]
    [InlineData("--lifetime", "-5", "--lifetime must be positive")]
    public async Task Add_ABadValue_IsOneSentenceNamingIt_Exit2(string flag, string value, string expected)
    {
        string[] args = flag == "--port"
            ? ["portmap", "add", "--gateway", "127.0.0.1", flag, value]
            : ["portmap", "add", "--gateway", "127.0.0.1", "--port", "4000", flag, value];
        var (code, output, errors) = await Cli(args);
        Assert.Equal(2, code);
        Assert.Contains(expected, output + errors, StringComparison.Ordinal);
        Assert.DoesNotContain(" at ", output + errors, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("::1", "--gateway ::1: NAT-PMP and PCP here are IPv4")]
    [InlineData("[::1]:5351", "--gateway [::1]:5351: NAT-PMP and PCP here are IPv4")]
    [InlineData("not-an-address!", "--gateway not-an-address!")]
    public async Task Probe_AnIpv6OrBadGateway_IsRefused(string gateway, string expected)
    {
        var (code, output, errors) = await Cli("portmap", "probe", "--gateway", gateway);
        Assert.Equal(2, code);
        Assert.Contains(expected, output + errors, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ProbeAddDelete_AgainstALoopbackServer_JsonParsesBack()
    {
        await using var server = await LoopbackServer.StartAsync();
        var (code, output, errors) = await Cli("portmap", "probe", "--gateway", server.Gateway, "--json");
        Assert.True(code == 0, output + errors);
        using (var probe = JsonDocument.Parse(output))
        {
            var record = Assert.Single(probe.RootElement.EnumerateArray().ToList());
            Assert.Equal(server.Gateway, record.GetProperty("name").GetString());
            Assert.True(record.GetProperty("natPmp").GetBoolean());
            Assert.True(record.GetProperty("pcp").GetBoolean());
            Assert.Equal("203.0.113.1", record.GetProperty("externalAddress").GetString());
        }

        (code, output, errors) = await Cli("portmap", "add", "--gateway", server.Gateway, "--port", "4000", "--external-port", "4000",
            "--protocol", "nat-pmp", "--lifetime", "600", "--json");
        Assert.True(code == 0, output + errors);
        using (var added = JsonDocument.Parse(output))
        {
            var record = Assert.Single(added.RootElement.EnumerateArray().ToList());
            Assert.Equal("udp 4000", record.GetProperty("name").GetString());
            Assert.Equal("nat-pmp", record.GetProperty("protocol").GetString());
            Assert.Equal("203.0.113.1:4000", record.GetProperty("external").GetString());
            Assert.Equal(600, record.GetProperty("lifetime").GetInt32());
        }

        lock (server.Engine) Assert.Single(server.Engine.ListMappings(long.MinValue));
        (code, output, errors) = await Cli("portmap", "delete", "--gateway", server.Gateway, "--port", "4000");
        Assert.True(code == 0, output + errors);
        lock (server.Engine) Assert.Empty(server.Engine.ListMappings(long.MinValue));
    }

    /// <summary>`natkit lab netns up` runs `natkit gateway run` processes; with a preset that offers NAT-PMP and PCP
    /// they serve them: natpmpc and `natkit portmap` in the LAN host get mappings, and `natkit portmap list` shows them.</summary>
    [PeerFact("ip", "natpmpc", Root = true)]
    public async Task LabNetnsGateway_ServesNatPmpAndPcp_ToNatpmpcAndNatkitPortmap()
    {
        var tag = "p" + NetworkNamespace.NewRunTag();
        var name = $"nk-{tag}-g1";
        try
        {
            var (code, output, errors) = await Cli("lab", "netns", "up", "--tag", tag, "--preset", "full-cone");
            Assert.True(code == 0, output + errors);

            (code, output, errors) = await Cli("lab", "netns", "exec", "lan", "--tag", tag, "--",
                "natpmpc", "-g", GatewayTopology.LanGatewayAddress, "-a", "4000", "4000", "udp", "600");
            Assert.True(code == 0 && output.Contains("Mapped public port 4000 protocol UDP", StringComparison.Ordinal), output + errors);

            (code, output, errors) = await Cli("lab", "netns", "exec", "lan", "--tag", tag, "--",
                "dotnet", Natkit, "portmap", "add", "--gateway", GatewayTopology.LanGatewayAddress, "--port", "5000", "--protocol", "pcp", "--json");
            Assert.True(code == 0, output + errors);
            using (var added = JsonDocument.Parse(output))
            {
                Assert.Equal($"{GatewayTopology.PublicAddress}:5000", added.RootElement[0].GetProperty("external").GetString());
            }

            (code, output, errors) = await Cli("portmap", "list", "--name", name, "--json");
            Assert.True(code == 0, output + errors);
            using var list = JsonDocument.Parse(output);
            Assert.Equal([$"{GatewayTopology.LanHostAddress}:4000", $"{GatewayTopology.LanHostAddress}:5000"],
                list.RootElement.EnumerateArray().Select(m => m.GetProperty("internal").GetString()!).Order(StringComparer.Ordinal));
            Assert.All(list.RootElement.EnumerateArray(), m => Assert.Equal(
                $"{m.GetProperty("transport").GetString()} {m.GetProperty("internal").GetString()}", m.GetProperty("name").GetString()));
        }
        finally
        {
            var (code, output, errors) = await Cli("lab", "netns", "down", "--tag", tag);
            Assert.True(code == 0, output + errors);
            File.Delete(GatewayControl.LogPathFor(name)); // `down` removed the policy; its log is kept for reading
        }
    }

    /// <summary>`natkit lab matrix --netns --portmap`: the namespace cell's NatKit gateways serve NAT-PMP/PCP, the
    /// nodes map through them, and the hard NAT on both sides connects directly, as in the lab.</summary>
    [PeerFact("ip", "nft", Root = true)]
    public async Task NetnsMatrix_WithPortmap_HardNatBothSides_DirectPortMapped_AgreeingWithTheLab()
    {
        var (code, output, errors) = await Cli("lab", "matrix", "--netns", "--portmap", "--types", "symmetric-random");
        var text = System.Text.RegularExpressions.Regex.Replace(
            string.Join(' ', (output + errors).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)), "\u001b\\[[0-9;]*m", "");
        Assert.True(code == 0, text);
        Assert.Contains("symmetric-random x symmetric-random: direct (port-mapped)", text, StringComparison.Ordinal);
        Assert.Contains("agrees", text, StringComparison.Ordinal);
    }
}
