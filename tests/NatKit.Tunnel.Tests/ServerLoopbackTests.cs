using System.Net;
using System.Net.WebSockets;
using NatKit.Nat.Ports;
using NatKit.Packets;
using NatKit.Tunnel.Client;
using NatKit.Tunnel.Framing;
using NatKit.Tunnel.Server;
using NatKit.Tunnel.Transport;

namespace NatKit.Tunnel.Tests;

/// <summary>
/// The tunnel server's sessions over real WebSockets on loopback (Kestrel, ClientWebSocket), without a TUN device:
/// the test reads and writes the engine's inside port itself, as the pump would.
/// </summary>
public sealed class ServerLoopbackTests : IAsyncLifetime
{
    private static readonly Ipv4Address Remote = Ipv4Address.Parse("203.0.113.2");
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);
    private TunnelServer _server = null!;
    private TunnelEndpoint _endpoint = null!;
    private TunnelUri _uri = null!;
    private readonly TaskCompletionSource _readable = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public async Task InitializeAsync()
    {
        _server = new TunnelServer(new TunnelServerOptions
        {
            Tokens = ["right"],
            Pool = Ipv4Prefix.Parse("10.99.0.0/24"),
            ExternalAddresses = [Ipv4Address.Parse("198.51.100.1")],
            AllowClientAddresses = true,
        });
        _server.Inside.SetWake(() => _readable.TrySetResult());
        _endpoint = await TunnelEndpoint.StartAsync(_server, [new IPEndPoint(IPAddress.Loopback, 0)], null);
        Assert.True(TunnelUri.TryParse(_endpoint.Urls[0], out var uri, out _));
        _uri = uri;
    }

    public async Task DisposeAsync()
    {
        await _endpoint.DisposeAsync();
        await _server.DisposeAsync();
    }

    private async Task<(WebSocket Socket, TunnelWelcome Welcome)> ConnectAsync(string token = "right",
        Guid session = default, string? address = null)
    {
        var socket = await TunnelSockets.ConnectAsync(_uri);
        using var cts = new CancellationTokenSource(Deadline);
        var hello = new TunnelHello(TunnelMessage.Version, TunnelFeatures.None, session,
            address is null ? Ipv4Address.Any : Ipv4Address.Parse(address), token);
        var welcome = await TunnelClient.HandshakeAsync(socket, hello, cts.Token);

        // the server lists the session once its welcome is sent, so the client may read the welcome a moment before
        // Sessions() shows it: wait for the listing (bounded) before a test reads the table
        while (!_server.Sessions().Any(s => s.Id == welcome.SessionId))
        {
            await Task.Delay(TimeSpan.FromMilliseconds(5), cts.Token);
        }

        return (socket, welcome);
    }

    private static byte[] Udp(Ipv4Address source, Ipv4Address destination, ushort sourcePort = 40000)
    {
        var buffer = new byte[200];
        var n = PacketBuilder.WriteIpv4Udp(buffer, new Ipv4Header(source, destination), sourcePort, 53, "payload"u8);
        return buffer[..n];
    }

    [Fact]
    public async Task AWrongToken_IsRefusedWithItsCode_AndNoSessionIsMade()
    {
        var e = await Assert.ThrowsAsync<TunnelRefusedException>(() => ConnectAsync("wrong"));
        Assert.Equal(TunnelCode.Unauthorized, e.Notice.Code);
        Assert.True(e.IsFinal);
        Assert.Equal(1, _server.Stats.Unauthorized);
        Assert.Equal(0, _server.Stats.Accepted);
        Assert.Empty(_server.Sessions());
    }

    [Fact]
    public async Task APoolClient_SpoofedSourceIsDroppedAndCounted_ItsOwnReachesTheInside_AndAnswersComeBack()
    {
        var (socket, welcome) = await ConnectAsync();
        using var owned = socket;
        Assert.Equal(Ipv4Address.Parse("10.99.0.2"), welcome.Address);
        Assert.Equal(Ipv4Address.Parse("10.99.0.1"), welcome.Gateway);

        await socket.SendAsync(Udp(Ipv4Address.Parse("10.99.0.77"), Remote), WebSocketMessageType.Binary, true, default);
        await socket.SendAsync(Udp(welcome.Address, Remote), WebSocketMessageType.Binary, true, default);
        await _readable.Task.WaitAsync(Deadline);

        var frame = new byte[PacketPump.FrameSize];
        var length = _server.Inside.Read(frame, out _);
        Assert.True(length > 0);
        Assert.True(Ipv4Packet.TryParse(frame.AsSpan(PacketPump.Headroom, length), out var ip));
        Assert.Equal(welcome.Address, ip.Source);
        Assert.Equal(0, _server.Inside.Read(frame, out _)); // the spoofed one never got in
        Assert.Equal(1, _server.Stats.Spoofed);

        // the engine's answer, written to the inside port, reaches this session's WebSocket
        var answer = Udp(Remote, welcome.Address, 53);
        answer.CopyTo(frame, PacketPump.Headroom);
        Assert.True(_server.Inside.Write(frame, answer.Length, VirtioNetHeader.None));
        _server.Inside.Flush();
        var received = new byte[2048];
        using var cts = new CancellationTokenSource(Deadline);
        var n = await TunnelSockets.ReceiveMessageAsync(socket, received, cts.Token);
        Assert.Equal(answer, received[..n]);
    }

    [Fact]
    public async Task TwoClientsWithTheSameAddress_GetInsideAddressesOfTheirOwn_WithValidChecksums()
    {
        var (first, w1) = await ConnectAsync(address: "10.1.1.2");
        var (second, w2) = await ConnectAsync(address: "10.1.1.2");
        using var a = first;
        using var b = second;
        Assert.Equal(w1.Address, w2.Address);
        var inside = _server.Sessions().Select(s => s.InsideAddress).ToList();
        Assert.Equal(2, inside.Distinct().Count());

        await second.SendAsync(Udp(w2.Address, Remote), WebSocketMessageType.Binary, true, default);
        await _readable.Task.WaitAsync(Deadline);
        var frame = new byte[PacketPump.FrameSize];
        var length = _server.Inside.Read(frame, out _);
        Assert.True(Ipv4Packet.TryParse(frame.AsSpan(PacketPump.Headroom, length), out var ip));
        Assert.NotEqual(w2.Address, ip.Source); // moved to the session's own inside address
        Assert.Contains(ip.Source.ToString(), inside);
        Assert.True(Checksum.IsValid(frame.AsSpan(PacketPump.Headroom, ip.HeaderLength)));
        Assert.True(UdpDatagram.TryParse(ip.Payload, out var udp));
        Assert.True(udp.IsChecksumValid(ip.Source, ip.Destination));

        // and the answer to that inside address goes back to the second client as 10.1.1.2
        var answer = Udp(Remote, ip.Source, 53);
        answer.CopyTo(frame, PacketPump.Headroom);
        Assert.True(_server.Inside.Write(frame, answer.Length, VirtioNetHeader.None));
        _server.Inside.Flush();
        var received = new byte[2048];
        using var cts = new CancellationTokenSource(Deadline);
        var n = await TunnelSockets.ReceiveMessageAsync(second, received, cts.Token);
        Assert.True(Ipv4Packet.TryParse(received.AsSpan(0, n), out var back));
        Assert.Equal(w2.Address, back.Destination);
        Assert.True(UdpDatagram.TryParse(back.Payload, out var backUdp));
        Assert.True(backUdp.IsChecksumValid(back.Source, back.Destination));
    }

    [Fact]
    public async Task AReconnectWithTheSessionId_GetsTheSameAddress_AndReplacesTheOldConnection()
    {
        var (first, w1) = await ConnectAsync();
        using var a = first;
        var (second, w2) = await ConnectAsync(session: w1.SessionId);
        using var b = second;
        Assert.Equal(w1.Address, w2.Address);
        Assert.Equal(w1.SessionId, w2.SessionId);

        // the old connection is told it was replaced, then closed
        var buffer = new byte[1024];
        using var cts = new CancellationTokenSource(Deadline);
        var n = await TunnelSockets.ReceiveMessageAsync(first, buffer, cts.Token);
        Assert.True(TunnelNotice.TryParse(buffer.AsSpan(0, n), out var bye, out _));
        Assert.Equal(TunnelCode.Replaced, bye.Code);
        Assert.Equal(1, _server.Stats.Replaced);
        Assert.Equal(1, Assert.Single(_server.Sessions()).Reconnects);

        // a third client gets another address: the reconnect did not leak one
        var (third, w3) = await ConnectAsync();
        using var c = third;
        Assert.NotEqual(w1.Address, w3.Address);
    }

    [Fact]
    public async Task AFirstMessageThatIsNotAHello_IsRefusedAsMalformed()
    {
        using var socket = await TunnelSockets.ConnectAsync(_uri);
        await socket.SendAsync(Udp(Ipv4Address.Parse("10.99.0.2"), Remote), WebSocketMessageType.Binary, true, default);
        var buffer = new byte[1024];
        using var cts = new CancellationTokenSource(Deadline);
        var n = await TunnelSockets.ReceiveMessageAsync(socket, buffer, cts.Token);
        Assert.True(TunnelNotice.TryParse(buffer.AsSpan(0, n), out var refusal, out _));
        Assert.Equal(TunnelCode.Malformed, refusal.Code);
        Assert.Equal(0, _server.Stats.Accepted);
    }
}
