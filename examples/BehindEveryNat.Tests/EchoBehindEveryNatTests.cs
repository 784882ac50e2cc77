using System.Net;
using System.Text;
using NatKit.Lab;
using NatKit.Nat;
using NatKit.Net;
using Xunit;

namespace BehindEveryNat.Tests;

/// <summary>The application under test: a client that asks a server for an echo. It takes its sockets from an
/// <see cref="INetwork"/>, so the same code runs on <see cref="SystemNetwork"/> and inside the lab.</summary>
public static class EchoApp
{
    public static async Task<string> AskAsync(INetwork network, IPEndPoint server, string text, CancellationToken ct)
    {
        using var socket = await network.BindUdpAsync(new IPEndPoint(IPAddress.Any, 0), ct);
        await socket.SendToAsync(Encoding.UTF8.GetBytes(text), server, ct);
        var buffer = new byte[1500];
        var answer = await socket.ReceiveFromAsync(buffer, ct);
        return Encoding.UTF8.GetString(buffer, 0, answer.Length);
    }

    public static async Task ServeOneAsync(INetwork network, IPEndPoint listen, CancellationToken ct)
    {
        using var socket = await network.BindUdpAsync(listen, ct);
        var buffer = new byte[1500];
        var request = await socket.ReceiveFromAsync(buffer, ct);
        await socket.SendToAsync(buffer.AsMemory(0, request.Length), request.RemoteEndPoint, ct);
    }
}

public sealed class EchoBehindEveryNatTests
{
    public static TheoryData<string> Presets()
    {
        var data = new TheoryData<string>();
        foreach (var preset in NatPresets.All)
        {
            data.Add(preset.Name);
        }

        return data;
    }

    /// <summary>A client behind each NAT preset reaches a server on the internet and gets its answer back:
    /// every NAT lets a reply to an outbound request in.</summary>
    [Theory]
    [MemberData(nameof(Presets))]
    public void TheEchoComesBack_BehindEveryNat(string preset)
    {
        var lab = new VirtualNetwork(seed: 42);
        var internet = lab.AddSegment("internet");
        var home = lab.AddSegment("home", "192.168.1.0/24");
        lab.AddRouter("nat", NatPresets.Find(preset)!.Policy, home, "192.168.1.1", internet, "198.51.100.1");
        var server = lab.AddHost("server", internet, "203.0.113.100");
        var alice = lab.AddHost("alice", home, "192.168.1.10");
        var at = new IPEndPoint(IPAddress.Parse("203.0.113.100"), 7);

        var answer = lab.Run(async () =>
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10), lab.TimeProvider);
            var serving = EchoApp.ServeOneAsync(server, at, cts.Token);
            var reply = await EchoApp.AskAsync(alice, at, $"hello from behind {preset}", cts.Token);
            await serving;
            return reply;
        });

        Assert.Equal($"hello from behind {preset}", answer);
    }
}
