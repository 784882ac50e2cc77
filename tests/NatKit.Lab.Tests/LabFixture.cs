using System.Net;
using NatKit.Nat;
using NatKit.Net;

namespace NatKit.Lab.Tests;

/// <summary>Small topologies the tests share, and helpers to move datagrams in them.</summary>
internal static class LabFixture
{
    public static readonly IPAddress Server1 = IPAddress.Parse("203.0.113.100");
    public static readonly IPAddress Server2 = IPAddress.Parse("203.0.113.101");

    /// <summary>internet (server with two addresses), home-a behind router "nat-a" (two hosts), home-b behind
    /// "nat-b" (one host).</summary>
    public static VirtualNetwork TwoHomes(NatPolicy a, NatPolicy b, int seed = 1)
    {
        var lab = new VirtualNetwork(seed);
        var internet = lab.AddSegment("internet");
        var homeA = lab.AddSegment("home-a", "192.168.1.0/24");
        var homeB = lab.AddSegment("home-b", "10.0.0.0/24");
        lab.AddRouter("nat-a", a, homeA, "192.168.1.1", internet, "198.51.100.1");
        lab.AddRouter("nat-b", b, homeB, "10.0.0.1", internet, "198.51.100.2");
        lab.AddHost("server", internet, "203.0.113.100", "203.0.113.101");
        lab.AddHost("alice", homeA, "192.168.1.10");
        lab.AddHost("alan", homeA, "192.168.1.11");
        lab.AddHost("bob", homeB, "10.0.0.10");
        return lab;
    }

    /// <summary>Receives one datagram or returns null after <paramref name="timeout"/> of virtual time.</summary>
    public static async Task<(byte[] Data, IPEndPoint From)?> ReceiveOrTimeout(IDatagramSocket socket,
        TimeProvider time, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout, time);
        var buffer = new byte[2048];
        try
        {
            var r = await socket.ReceiveFromAsync(buffer, cts.Token);
            return (buffer[..r.Length], r.RemoteEndPoint);
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    public static Task<IDatagramSocket> Bind(LabHost host, int port = 0) =>
        host.BindUdpAsync(new IPEndPoint(IPAddress.Any, port)).AsTask();

    public static Task<IDatagramSocket> Bind(LabHost host, IPAddress address, int port) =>
        host.BindUdpAsync(new IPEndPoint(address, port)).AsTask();
}

/// <summary>Records mapping creation and removal with their engine times.</summary>
internal sealed class MappingLog : INatObserver
{
    public List<(NatMappingEvent Event, bool Created)> Events { get; } = [];

    public void MappingCreated(in NatMappingEvent e) => Events.Add((e, true));

    public void MappingRemoved(in NatMappingEvent e) => Events.Add((e, false));
}
