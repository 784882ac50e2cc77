using System.Net;
using System.Text;
using NatKit.Nat.Ports;
using NatKit.Packets;

namespace NatKit.Tunnel.Tests;

/// <summary>
/// The whole tunnel chain in the in-memory lab, without root (see <see cref="LabChain"/>): client, relay, server with
/// the NAT engine, and a web server on the lab's internet, every hop a WebSocket over lab TCP, in virtual time.
/// </summary>
public sealed class LabChainTests
{
    [Fact]
    public void AnHttpGet_FromAHostWhoseOnlyRouteIsTheTunnel_ReachesTheWebServer_ThroughRelayAndServer()
    {
        var chain = new LabChain();
        var (status, body, sessions, flows) = chain.Lab.Run(async () =>
        {
            await chain.StartAsync();
            var client = chain.AddClient();
            var welcome = await client.ConnectAsync();
            Assert.Equal(Ipv4Address.Parse("10.1.1.2"), welcome.Address);
            var (status, body) = await LabChain.GetAsync(client.App!, "/index");
            var sessions = chain.Server.Sessions();
            var flows = await chain.Server.FlowsAsync();
            await client.StopAsync();
            return (status, body, sessions, flows);
        });

        Assert.Equal("HTTP/1.1 200 OK", status);
        Assert.Equal(LabChain.Body("/index"), body);
        var session = Assert.Single(sessions);
        Assert.Equal("10.1.1.2", session.ClientAddress);
        Assert.StartsWith("10.99.0.", session.InsideAddress, StringComparison.Ordinal);
        Assert.True(session.BytesOut > 100_000, $"the session carried {session.BytesOut} bytes to the client");

        // the web server saw the NAT's external address; the flow belongs to the session's inside address
        var flow = Assert.Single(flows, f => f.Protocol == "tcp");
        Assert.StartsWith(LabChain.External + ":", flow.Outside, StringComparison.Ordinal);
        Assert.Equal("203.0.113.10:80", flow.Remote);
        Assert.StartsWith(session.InsideAddress + ":", flow.Inside, StringComparison.Ordinal);
        Assert.Equal(1, chain.Relay!.Stats.Accepted);
        Assert.True(chain.Relay.Stats.MessagesOut > 10, $"relay carried {chain.Relay.Stats.MessagesOut} messages up");
    }

    [Fact]
    public void IcmpEcho_ThroughTheTunnel_IsAnsweredWithTheClientsIdentifier_AndUdpComesBackFromTheNatsAddress()
    {
        var chain = new LabChain();
        var (reply, udpAnswer) = chain.Lab.Run<(byte[], string)>(async () =>
        {
            await chain.StartAsync();
            var pinger = chain.AddClient(rawApp: true);
            var udp = chain.AddClient();
            await pinger.ConnectAsync();
            await udp.ConnectAsync();

            // ICMP echo from the raw port at 10.1.1.2: its next hop is the client's port, so it goes through the tunnel
            var arrived = new TaskCompletionSource();
            pinger.Raw!.SetWake(() => arrived.TrySetResult());
            var frame = new byte[PacketPump.FrameSize];
            var n = PacketBuilder.WriteIpv4IcmpEcho(frame.AsSpan(PacketPump.Headroom),
                new Ipv4Header(Ipv4Address.Parse("10.1.1.2"), Ipv4Address.Parse("203.0.113.10")), identifier: 0x4242,
                sequenceNumber: 7, "ping through the tunnel"u8);
            Assert.True(pinger.Raw.Write(frame, n, VirtioNetHeader.None));
            await arrived.Task;
            var length = pinger.Raw.Read(frame, out _);
            var reply = frame.AsSpan(PacketPump.Headroom, length).ToArray();

            // UDP from the other client's app host: the echo says which source the internet saw
            using var socket = await udp.App!.BindUdpAsync(new IPEndPoint(IPAddress.Any, 40000));
            await socket.SendToAsync("hello"u8.ToArray(), LabChain.WebUdp);
            var buffer = new byte[2048];
            var r = await socket.ReceiveFromAsync(buffer);
            Assert.Equal(LabChain.WebUdp, r.RemoteEndPoint);
            await pinger.StopAsync();
            await udp.StopAsync();
            return (reply, Encoding.ASCII.GetString(buffer, 0, r.Length));
        });

        Assert.True(Ipv4Packet.TryParse(reply, out var ip));
        Assert.Equal(Ipv4Address.Parse("203.0.113.10"), ip.Source);
        Assert.Equal(Ipv4Address.Parse("10.1.1.2"), ip.Destination);
        Assert.True(IcmpV4Message.TryParse(ip.Payload, out var icmp));
        Assert.Equal(IcmpV4Type.EchoReply, icmp.Type);
        Assert.Equal(0x4242, icmp.Identifier);
        Assert.Equal(7, icmp.SequenceNumber);
        Assert.Equal("ping through the tunnel"u8.ToArray(), icmp.Payload.ToArray());
        Assert.Matches(@"^198\.51\.100\.1:\d+ hello$", udpAnswer);
    }

    [Fact]
    public void AWrongToken_IsRefusedBeforeAnyPacketFlows_AndTheClientStops()
    {
        var chain = new LabChain();
        var refusal = chain.Lab.Run(async () =>
        {
            await chain.StartAsync();
            var client = chain.AddClient(token: "wrong");
            return await Assert.ThrowsAsync<Client.TunnelRefusedException>(() => client.Client.RunAsync(CancellationToken.None));
        });

        Assert.Equal(Framing.TunnelCode.Unauthorized, refusal.Notice.Code);
        Assert.True(refusal.IsFinal);
        Assert.Equal(1, chain.Server.Stats.Unauthorized);
        Assert.Equal(0, chain.Server.Stats.Accepted);
        Assert.Equal(0, chain.ServerDriver.Pump.Stats.InsideRead);
    }

    [Fact]
    public void TwoClients_WithTheSameInnerAddress_FetchAtOnce_AndEachGetsItsOwnBytes()
    {
        var chain = new LabChain();
        var (first, second, sessions) = chain.Lab.Run(async () =>
        {
            await chain.StartAsync();
            var c1 = chain.AddClient();
            var c2 = chain.AddClient();
            await c1.ConnectAsync();
            await c2.ConnectAsync();
            var one = LabChain.GetAsync(c1.App!, "/one");
            var two = LabChain.GetAsync(c2.App!, "/two");
            var first = await one;
            var second = await two;
            var sessions = chain.Server.Sessions();
            await c1.StopAsync();
            await c2.StopAsync();
            return (first, second, sessions);
        });

        Assert.Equal("HTTP/1.1 200 OK", first.Status);
        Assert.Equal(LabChain.Body("/one"), first.Body);
        Assert.Equal("HTTP/1.1 200 OK", second.Status);
        Assert.Equal(LabChain.Body("/two"), second.Body);
        Assert.NotEqual(LabChain.Body("/one"), LabChain.Body("/two"));
        Assert.Equal(2, sessions.Count);
        Assert.All(sessions, s => Assert.Equal("10.1.1.2", s.ClientAddress));
        Assert.NotEqual(sessions[0].InsideAddress, sessions[1].InsideAddress);
    }
}
