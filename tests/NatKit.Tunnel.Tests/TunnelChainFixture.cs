using System.Security.Cryptography;
using NatKit.Linux;

namespace NatKit.Tunnel.Tests;

/// <summary>
/// The reference's chain in network namespaces: two clients (c1, c2) whose only way out is the tunnel, each on its own
/// link to a relay namespace (rly) running `natkit tunnel relay`, which opens a new WebSocket per client to the server
/// namespace (srv) running `natkit tunnel serve`, whose NAT puts the clients on the WAN namespace (wan) as 198.51.100.1,
/// where a web server and a UDP echo answer. Both clients call themselves 10.1.1.2. Every namespace, and so every
/// process and link in it, is removed at the end, also when a test failed.
/// </summary>
public sealed class TunnelChainFixture : IAsyncLifetime
{
    public const string WanAddress = "203.0.113.2";
    public const string External = "198.51.100.1";
    public const string Gateway = "10.99.0.1";
    public const string ClientAddress = "10.1.1.2";
    public const string Token = "chain-token";

    private readonly List<NetworkNamespace> _namespaces = [];
    private readonly List<ExternalProcess> _processes = [];
    private string _www = "";

    public static string Natkit => Path.Combine(AppContext.BaseDirectory, "natkit.dll");

    public string Tag { get; } = "t" + NetworkNamespace.NewRunTag();

    public NetworkNamespace Wan { get; private set; } = null!;
    public NetworkNamespace Server { get; private set; } = null!;
    public NetworkNamespace Relay { get; private set; } = null!;
    public NetworkNamespace Client1 { get; private set; } = null!;
    public NetworkNamespace Client2 { get; private set; } = null!;

    /// <summary>A third client, on its own link to the relay namespace, for the browser hop.</summary>
    public NetworkNamespace Client3 { get; private set; } = null!;

    public ExternalProcess ServerProcess { get; private set; } = null!;
    public ExternalProcess RelayProcess { get; set; } = null!;
    public ExternalProcess ClientProcess1 { get; private set; } = null!;
    public ExternalProcess ClientProcess2 { get; private set; } = null!;

    /// <summary>The server's control socket name.</summary>
    public string Name => "nk-" + Tag;

    /// <summary>Two files of random bytes on the web server, and their SHA-256.</summary>
    public Dictionary<string, string> Files { get; } = [];

    public async Task InitializeAsync()
    {
        if (!TestHost.IsRoot && !TestHost.IsCi)
        {
            return; // the tests skip themselves
        }

        try
        {
            Wan = await Add("wan");
            Server = await Add("srv");
            Relay = await Add("rly");
            Client1 = await Add("c1");
            Client2 = await Add("c2");
            Client3 = await Add("c3");
            await Link(Wan, "203.0.113.2/24", Server, "203.0.113.1/24", "a");
            await Link(Server, "192.168.50.1/24", Relay, "192.168.50.2/24", "b");
            await Link(Relay, "192.168.60.1/24", Client1, "192.168.60.2/24", "c");
            await Link(Relay, "192.168.61.1/24", Client2, "192.168.61.2/24", "d");
            await Link(Relay, "192.168.62.1/24", Client3, "192.168.62.2/24", "e");
            await Wan.IpAsync(["route", "add", "198.51.100.0/24", "via", "203.0.113.1"]);
            await Server.SysctlAsync("net.ipv4.ip_forward", "1");

            _www = Directory.CreateTempSubdirectory("natkit-www-").FullName;
            foreach (var file in new[] { "one.bin", "two.bin" })
            {
                var bytes = RandomNumberGenerator.GetBytes(400_000);
                await File.WriteAllBytesAsync(Path.Combine(_www, file), bytes);
                Files[file] = Convert.ToHexStringLower(SHA256.HashData(bytes));
            }

            Start(Wan, "python3", ["-m", "http.server", "80", "--bind", WanAddress, "--directory", _www]);
            Start(Wan, "python3", ["-c", UdpEcho]);
            ServerProcess = Start(Server, "dotnet", [Natkit, "tunnel", "serve", "--listen", "192.168.50.1:8080", "--token", Token,
                "--pool", "10.99.0.0/24", "--external", External, "--tun", "nkt0", "--name", Name, "--allow-client-addresses",
                "--keepalive", "2"]);
            await ServerProcess.WaitForOutputAsync("natkit tunnel: serving", TimeSpan.FromSeconds(60));
            RelayProcess = StartRelay();
            await RelayProcess.WaitForOutputAsync("natkit tunnel: relaying", TimeSpan.FromSeconds(60));
            ClientProcess1 = StartClient(Client1, "192.168.60.1");
            ClientProcess2 = StartClient(Client2, "192.168.61.1");
            await ClientProcess1.WaitForOutputAsync("connected (#1)", TimeSpan.FromSeconds(60));
            await ClientProcess2.WaitForOutputAsync("connected (#1)", TimeSpan.FromSeconds(60));
        }
        catch
        {
            await DisposeAsync();
            throw;
        }
    }

    /// <summary>A UDP echo on port 7 of the WAN host.</summary>
    private const string UdpEcho =
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('203.0.113.2',7))\nwhile True:\n d,a=s.recvfrom(2048)\n s.sendto(d,a)\n";

    public ExternalProcess StartRelay() =>
        Start(Relay, "dotnet", [Natkit, "tunnel", "relay", "--listen", "192.168.60.1:8081", "--listen", "192.168.61.1:8081",
            "--upstream", "ws://192.168.50.1:8080/tunnel"]);

    private ExternalProcess StartClient(NetworkNamespace ns, string relay) =>
        Start(ns, "dotnet", [Natkit, "tunnel", "connect", $"ws://{relay}:8081/tunnel", "--token", Token, "--tun", "nkt0",
            "--route", "default", "--address", ClientAddress]);

    public ExternalProcess Start(NetworkNamespace ns, string program, IEnumerable<string> arguments)
    {
        var p = ExternalProcess.Start("ip", ["netns", "exec", ns.Name, TestHost.Which(program) ?? program, .. arguments]);
        _processes.Add(p);
        return p;
    }

    /// <summary>Runs `natkit ARGS` (outside any namespace) to completion.</summary>
    public static Task<(int ExitCode, string Output, string Errors)> CliAsync(params string[] arguments) =>
        ExternalProcess.RunAsync("dotnet", [Natkit, .. arguments], TimeSpan.FromSeconds(60));

    private async Task<NetworkNamespace> Add(string role)
    {
        var ns = await NetworkNamespace.CreateAsync($"nk-{Tag}-{role}");
        _namespaces.Add(ns);
        return ns;
    }

    private async Task Link(NetworkNamespace a, string aAddress, NetworkNamespace b, string bAddress, string id)
    {
        string left = $"{Tag}{id}0", right = $"{Tag}{id}1";
        await SystemCommand.RunAsync("ip", ["link", "add", left, "netns", a.Name, "type", "veth", "peer", "name", right, "netns", b.Name]);
        await a.IpAsync(["addr", "add", aAddress, "dev", left]);
        await a.IpAsync(["link", "set", left, "up"]);
        await b.IpAsync(["addr", "add", bAddress, "dev", right]);
        await b.IpAsync(["link", "set", right, "up"]);
    }

    /// <summary>A directory with a short path (/tmp/nk-TAG-NAME), removed with the fixture.</summary>
    public string ShortDirectory(string name)
    {
        var path = $"/tmp/nk-{Tag}-{name}";
        Directory.CreateDirectory(path);
        _directories.Add(path);
        return path;
    }

    private readonly List<string> _directories = [];

    public async Task DisposeAsync()
    {
        foreach (var p in Enumerable.Reverse(_processes))
        {
            await p.DisposeAsync();
        }

        foreach (var ns in Enumerable.Reverse(_namespaces))
        {
            await ns.DisposeAsync();
        }

        foreach (var d in _directories)
        {
            Directory.Delete(d, recursive: true);
        }

        if (_www.Length > 0)
        {
            Directory.Delete(_www, recursive: true);
        }

        File.Delete(Path.Combine(GatewayControl.Directory, Name + ".tunnel.sock"));
    }
}
