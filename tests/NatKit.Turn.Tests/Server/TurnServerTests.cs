using System.Net;
using System.Net.Sockets;
using NatKit.Net;
using NatKit.Stun;
using NatKit.Turn.Client;
using NatKit.Turn.Policy;
using NatKit.Turn.Protocol;
using NatKit.Turn.Server;
using NatKit.Turn.Tests.Support;

namespace NatKit.Turn.Tests.Server;

/// <summary>The server's rules on a fake clock (ClockedNetwork over loopback): auth, allocation and channel rules,
/// quotas, timers, limits and fuzzing. How it relays on both networks is Shared/TurnServerContract.cs.</summary>
public class TurnServerTests
{
    private static async Task<(byte[] Data, IPEndPoint From)> ReceiveAsync(IDatagramSocket socket)
    {
        var buffer = new byte[65536];
        using var cts = TurnHarness.Deadline();
        var d = await socket.ReceiveFromAsync(buffer, cts.Token);
        return (buffer[..d.Length], d.RemoteEndPoint);
    }

    private static async Task<(byte[] Data, IPEndPoint From)> ReceiveAsync(TurnClient client)
    {
        var buffer = new byte[65536];
        using var cts = TurnHarness.Deadline();
        var r = await client.ReceiveAsync(buffer, cts.Token);
        return (buffer[..r.Length], r.Peer);
    }

    public static TheoryData<string> DeniedPeers => new()
    {
        "127.0.0.1", "::ffff:127.0.0.1", "0.0.0.0", "10.1.2.3", "172.16.0.1", "192.168.0.1", "100.64.0.1",
        "169.254.169.254", "224.0.0.1", "255.255.255.255", "240.0.0.1", "192.0.2.1", "198.51.100.1", "203.0.113.1",
        "198.18.0.1", "::ffff:10.0.0.1", "::127.0.0.1",
    };

    [Theory]
    [MemberData(nameof(DeniedPeers))]
    public async Task DeniedPeer_Gets403_OnCreatePermissionAndChannelBind_ThenWorksWithAnAllowEntry(string address)
    {
        await using (var h = await TurnHarness.StartAsync(o => o with { Policy = PeerPolicy.Default }))
        {
            var c = await h.ClientAsync();
            var peer = new IPEndPoint(IPAddress.Parse(address), 5000);
            var e1 = await Assert.ThrowsAsync<TurnException>(() => c.CreatePermissionAsync(peer.Address));
            Assert.Equal(403, e1.Code);
            var e2 = await Assert.ThrowsAsync<TurnException>(() => c.BindChannelAsync(peer));
            Assert.Equal(403, e2.Code);
        }

        var rule = PeerRule.Parse(IpKey.Normalized(IPAddress.Parse(address)).ToIPAddress().ToString());
        await using (var h = await TurnHarness.StartAsync(o => o with { Policy = new PeerPolicy(allow: [rule]) }))
        {
            var c = await h.ClientAsync();
            await c.CreatePermissionAsync(IPAddress.Parse(address));
            await c.BindChannelAsync(new IPEndPoint(IPAddress.Parse(address), 5000));
        }
    }

    [Fact]
    public async Task DeniedPeer_Gets403_ForIPv6Ranges_OnAnIPv6Relay()
    {
        await using var h = await TurnHarness.StartAsync(o => o with { Policy = PeerPolicy.Default });
        var c = await h.ClientAsync(h.ClientOptions() with { RelayFamily = AddressFamily.InterNetworkV6 });
        foreach (var a in new[] { "::1", "fe80::1", "fd00::1", "ff02::1", "64:ff9b::a00:1", "2001:db8::1" })
        {
            var e = await Assert.ThrowsAsync<TurnException>(() => c.CreatePermissionAsync(IPAddress.Parse(a)));
            Assert.Equal(403, e.Code);
        }
    }

    [Fact]
    public async Task ServerOwnEndPoint_Gets403_EvenWhenLoopbackIsAllowed()
    {
        await using var h = await TurnHarness.StartAsync();
        var c = await h.ClientAsync();
        var e = await Assert.ThrowsAsync<TurnException>(() => c.BindChannelAsync(h.Udp));
        Assert.Equal(403, e.Code);
        var e2 = await Assert.ThrowsAsync<TurnException>(() => c.BindChannelAsync(h.Tcp));
        Assert.Equal(403, e2.Code);
    }

    [Fact]
    public async Task ServerOwnAddress_IsDenied_WhenNoAllowRuleNamesIt()
    {
        // No allow rule: loopback is denied anyway, and so is the listening endpoint.
        await using var h = await TurnHarness.StartAsync(o => o with { Policy = PeerPolicy.Default });
        var c = await h.ClientAsync();
        var e = await Assert.ThrowsAsync<TurnException>(() => c.BindChannelAsync(h.Udp));
        Assert.Equal(403, e.Code);
        Assert.False(h.Server.Policy.Check(h.Udp).Allowed);
        Assert.Equal(PeerPolicy.ReasonServerEndPoint, h.Server.Policy.Check(h.Udp).Reason);
    }

    [Fact]
    public async Task Rfc8656_7_2_WrongPassword_Gets401_UnknownUser_Gets401()
    {
        await using var h = await TurnHarness.StartAsync();
        var e = await Assert.ThrowsAsync<TurnException>(() => h.ClientAsync(h.ClientOptions(password: "nope")));
        Assert.Equal(401, e.Code);
        var e2 = await Assert.ThrowsAsync<TurnException>(() => h.ClientAsync(h.ClientOptions(user: "mallory")));
        Assert.Equal(401, e2.Code);
        Assert.Equal(0, h.Server.AllocationCount);
    }

    [Fact]
    public async Task Rfc8489_9_2_StaleNonce_Gets438_AndTheClientRecovers()
    {
        await using var h = await TurnHarness.StartAsync(o => o with { NonceLifetime = TimeSpan.FromMinutes(1) });
        await using var raw = await RawClient.OpenAsync(h.Udp);
        var ok = await raw.AllocateAsync();
        Assert.Equal(StunClass.SuccessResponse, ok.Class);
        var oldNonce = raw.Nonce;

        h.Time.Advance(TimeSpan.FromMinutes(2));
        var refresh = raw.Build(TurnMethods.Refresh, (ref StunMessageWriter w) =>
            w.AddUInt32(TurnAttributeType.Lifetime, 0), nonce: oldNonce);
        var stale = await raw.TransactAsync(refresh);
        Assert.Equal(438, RawClient.ErrorCode(stale));
        Assert.NotEqual(oldNonce, raw.Nonce);
        Assert.Equal(1, h.Server.AllocationCount); // the stale Refresh deleted nothing

        var again = await raw.TransactAsync(raw.Build(TurnMethods.Refresh, null));
        Assert.Equal(StunClass.SuccessResponse, again.Class);

        // The client library answers 438 by itself.
        var c = await h.ClientAsync();
        h.Time.Advance(TimeSpan.FromMinutes(2));
        await c.CreatePermissionAsync(IPAddress.Loopback);
    }

    [Fact]
    public async Task Replayed_Requests_AreRefused_AndChangeNothing()
    {
        await using var h = await TurnHarness.StartAsync(o => o with { NonceLifetime = TimeSpan.FromMinutes(1) });
        await using var raw = await RawClient.OpenAsync(h.Udp);
        await raw.AllocateAsync();
        var peer = await h.PeerAsync();
        var bind = raw.Build(TurnMethods.ChannelBind, (ref StunMessageWriter w) =>
        {
            w.AddUInt32(TurnAttributeType.ChannelNumber, 0x4001u << 16);
            w.AddXorAddress(TurnAttributeType.XorPeerAddress, StunAddress.FromEndPoint(peer.LocalEndPoint));
        });
        Assert.Equal(StunClass.SuccessResponse, (await raw.TransactAsync(bind)).Class);

        // The same request captured and replayed from another address: 437 there (no allocation).
        await using var attacker = await RawClient.OpenAsync(h.Udp);
        Assert.Equal(437, RawClient.ErrorCode(await attacker.TransactAsync(bind)));

        // Replayed once its nonce is stale: 438, and the binding is as it was.
        h.Time.Advance(TimeSpan.FromMinutes(2));
        Assert.Equal(438, RawClient.ErrorCode(await attacker.TransactAsync(bind)));
        Assert.Equal(438, RawClient.ErrorCode(await raw.TransactAsync(bind)));
        Assert.Equal(1, h.Server.AllocationCount);
    }

    [Fact]
    public async Task WrongIntegrity_Gets401_AndChangesNothing()
    {
        await using var h = await TurnHarness.StartAsync();
        await using var raw = await RawClient.OpenAsync(h.Udp);
        await raw.AllocateAsync();
        var delete = raw.Build(TurnMethods.Refresh, (ref StunMessageWriter w) =>
            w.AddUInt32(TurnAttributeType.Lifetime, 0), password: "guess");
        Assert.Equal(401, RawClient.ErrorCode(await raw.TransactAsync(delete)));
        Assert.Equal(1, h.Server.AllocationCount);

        // A valid message with one bit flipped in an attribute also fails integrity.
        var good = raw.Build(TurnMethods.Refresh, (ref StunMessageWriter w) => w.AddUInt32(TurnAttributeType.Lifetime, 0));
        good[StunMessageReader.HeaderLength + 7] ^= 0x01; // LIFETIME 0 -> 1
        Assert.Equal(401, RawClient.ErrorCode(await raw.TransactAsync(good)));
        Assert.Equal(1, h.Server.AllocationCount);
    }

    [Fact]
    public async Task Rfc8656_7_AnotherUser_OnTheSameFiveTuple_Gets441()
    {
        await using var h = await TurnHarness.StartAsync();
        await using var raw = await RawClient.OpenAsync(h.Udp);
        await raw.AllocateAsync();
        var refresh = raw.Build(TurnMethods.Refresh, null, user: "bob", password: "builder");
        Assert.Equal(441, RawClient.ErrorCode(await raw.TransactAsync(refresh)));
    }

    [Fact]
    public async Task Rfc8656_7_2_SecondAllocate_Gets437_ButARetransmissionGetsTheSameAnswer()
    {
        await using var h = await TurnHarness.StartAsync();
        await using var raw = await RawClient.OpenAsync(h.Udp);
        await raw.TransactAsync(raw.Build(TurnMethods.Allocate, RawClient.RequestUdp, user: null));
        var allocate = raw.Build(TurnMethods.Allocate, RawClient.RequestUdp);
        var first = await raw.TransactAsync(allocate);
        var again = await raw.TransactAsync(allocate);
        Assert.Equal(first, again);
        var other = await raw.TransactAsync(raw.Build(TurnMethods.Allocate, RawClient.RequestUdp));
        Assert.Equal(437, RawClient.ErrorCode(other));
        Assert.Equal(1, h.Server.AllocationCount);
    }

    [Fact]
    public async Task Rfc8656_7_RequestsWithoutAnAllocation_Get437()
    {
        await using var h = await TurnHarness.StartAsync();
        await using var raw = await RawClient.OpenAsync(h.Udp);
        await raw.TransactAsync(raw.Build(TurnMethods.Refresh, null, user: null));
        Assert.Equal(437, RawClient.ErrorCode(await raw.TransactAsync(raw.Build(TurnMethods.Refresh, null))));
        Assert.Equal(437, RawClient.ErrorCode(await raw.TransactAsync(raw.Build(TurnMethods.CreatePermission,
            (ref StunMessageWriter w) => w.AddXorAddress(TurnAttributeType.XorPeerAddress,
                StunAddress.FromAddress(IPAddress.Loopback, 1))))));
    }

    [Theory]
    [InlineData(0, 442)] // not UDP
    [InlineData(-1, 400)] // no REQUESTED-TRANSPORT
    public async Task Rfc8656_7_2_BadTransport_IsRefused(int transport, int code)
    {
        await using var h = await TurnHarness.StartAsync();
        await using var raw = await RawClient.OpenAsync(h.Udp);
        await raw.TransactAsync(raw.Build(TurnMethods.Allocate, null, user: null));
        var m = await raw.TransactAsync(raw.Build(TurnMethods.Allocate, (ref StunMessageWriter w) =>
        {
            if (transport >= 0)
            {
                w.AddUInt32(TurnAttributeType.RequestedTransport, (uint)transport << 24);
            }
        }));
        Assert.Equal(code, RawClient.ErrorCode(m));
        Assert.Equal(0, h.Server.AllocationCount);
    }

    [Fact]
    public async Task Rfc8656_11_ChannelRules_BadNumber400_Conflict400()
    {
        await using var h = await TurnHarness.StartAsync();
        var c = await h.ClientAsync();
        var a = await h.PeerAsync();
        var b = await h.PeerAsync();
        Assert.Equal(400, (await Assert.ThrowsAsync<TurnException>(() => c.BindChannelAsync(a.LocalEndPoint, 0x8000))).Code);
        Assert.Equal(400, (await Assert.ThrowsAsync<TurnException>(() => c.BindChannelAsync(a.LocalEndPoint, 0x3FFF))).Code);
        await c.BindChannelAsync(a.LocalEndPoint, 0x4000);
        await c.BindChannelAsync(a.LocalEndPoint, 0x4000); // refresh is fine
        Assert.Equal(400, (await Assert.ThrowsAsync<TurnException>(() => c.BindChannelAsync(b.LocalEndPoint, 0x4000))).Code);
        Assert.Equal(400, (await Assert.ThrowsAsync<TurnException>(() => c.BindChannelAsync(a.LocalEndPoint, 0x4001))).Code);
    }

    [Fact]
    public async Task ForeignAllocationsChannel_RelaysNothing()
    {
        await using var h = await TurnHarness.StartAsync();
        var victim = await h.ClientAsync();
        var attacker = await h.ClientAsync(h.ClientOptions(user: "bob", password: "builder"));
        var peer = await h.PeerAsync();
        var channel = await victim.BindChannelAsync(peer.LocalEndPoint);

        // The attacker sends ChannelData on the victim's channel number from its own 5-tuple.
        var frame = new byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(frame, channel);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(2), 4);
        "evil"u8.CopyTo(frame.AsSpan(4));
        using (var s = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp))
        {
            s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            s.SendTo(frame, h.Udp);
        }

        await victim.SendAsync("good"u8.ToArray(), peer.LocalEndPoint);
        Assert.Equal("good"u8.ToArray(), (await ReceiveAsync(peer)).Data); // evil, sent first, never arrived
        _ = attacker;
    }

    [Fact]
    public async Task Rfc8656_7_3_RefreshZero_Deletes_AndLaterRequestsGet437()
    {
        await using var h = await TurnHarness.StartAsync();
        var c = await h.ClientAsync();
        await c.RefreshAsync(TimeSpan.FromSeconds(1200));
        Assert.Equal(TimeSpan.FromSeconds(1200), c.Lifetime);
        await c.RefreshAsync(TimeSpan.FromDays(1));
        Assert.Equal(TimeSpan.FromSeconds(3600), c.Lifetime); // capped
        await c.RefreshAsync(TimeSpan.Zero);
        Assert.Equal(0, h.Server.AllocationCount);
        Assert.Equal(437, (await Assert.ThrowsAsync<TurnException>(() => c.CreatePermissionAsync(IPAddress.Loopback))).Code);
    }

    [Fact]
    public async Task Rfc8656_7_AllocationExpires_AfterItsLifetime()
    {
        await using var h = await TurnHarness.StartAsync();
        await h.ClientAsync();
        h.Time.Advance(TimeSpan.FromSeconds(599));
        Assert.Equal(1, h.Server.AllocationCount);
        h.Time.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal(0, h.Server.AllocationCount);
    }

    [Fact]
    public async Task Rfc8656_9_PermissionExpires_After300Seconds()
    {
        await using var h = await TurnHarness.StartAsync();
        var c = await h.ClientAsync();
        var peer = await h.PeerAsync();
        await c.CreatePermissionAsync(IPAddress.Loopback);
        h.Time.Advance(TimeSpan.FromSeconds(301));
        await peer.SendToAsync("late"u8.ToArray(), c.RelayedEndPoint); // dropped: permission gone
        // the relay socket's loop reads it on its own time: the new permission must come after the drop
        Assert.True(SpinWait.SpinUntil(() => h.Server.Metrics.DropCount(DropReason.NoPermission) > 0, TimeSpan.FromSeconds(10)));
        await c.CreatePermissionAsync(IPAddress.Loopback);
        await peer.SendToAsync("fresh"u8.ToArray(), c.RelayedEndPoint);
        Assert.Equal("fresh"u8.ToArray(), (await ReceiveAsync(c)).Data);
    }

    [Fact]
    public async Task Quota_PerUser486_Total508()
    {
        await using (var h = await TurnHarness.StartAsync(o => o with { MaxAllocationsPerUser = 2 }))
        {
            await h.ClientAsync();
            await h.ClientAsync();
            Assert.Equal(486, (await Assert.ThrowsAsync<TurnException>(() => h.ClientAsync())).Code);
            await h.ClientAsync(h.ClientOptions(user: "bob", password: "builder"));
        }

        await using (var h = await TurnHarness.StartAsync(o => o with { MaxAllocations = 1 }))
        {
            await h.ClientAsync();
            Assert.Equal(508, (await Assert.ThrowsAsync<TurnException>(() =>
                h.ClientAsync(h.ClientOptions(user: "bob", password: "builder")))).Code);
        }
    }

    [Fact]
    public async Task PortRangeExhausted_Gets508()
    {
        var port = FreeUdpPort();
        await using var h = await TurnHarness.StartAsync(o => o with { MinPort = port, MaxPort = port });
        var c = await h.ClientAsync();
        Assert.Equal(port, c.RelayedEndPoint.Port);
        Assert.Equal(508, (await Assert.ThrowsAsync<TurnException>(() => h.ClientAsync())).Code);
        await c.RefreshAsync(TimeSpan.Zero);
        await h.ClientAsync(); // the port came back
    }

    [Fact]
    public async Task Rfc8656_7_2_EvenPort_AndReservationToken()
    {
        await using var h = await TurnHarness.StartAsync();
        var first = await h.ClientAsync(h.ClientOptions() with { EvenPort = true, ReservePair = true });
        Assert.Equal(0, first.RelayedEndPoint.Port % 2);
        Assert.NotNull(first.ReservationToken);
        var second = await h.ClientAsync(h.ClientOptions() with { ReservationToken = first.ReservationToken });
        Assert.Equal(first.RelayedEndPoint.Port + 1, second.RelayedEndPoint.Port);
        var e = await Assert.ThrowsAsync<TurnException>(() =>
            h.ClientAsync(h.ClientOptions() with { ReservationToken = first.ReservationToken }));
        Assert.Equal(508, e.Code); // a token is good once
    }

    /// <summary>True when another program could bind UDP <paramref name="port"/> on the relay address now.</summary>
    private static async Task<bool> AnotherProgramCanBind(int port)
    {
        try
        {
            await using var s = await SystemNetwork.Instance.BindUdpAsync(new IPEndPoint(IPAddress.Loopback, port));
            return true;
        }
        catch (NetworkException e) when (e.Error == SocketError.AddressAlreadyInUse)
        {
            return false;
        }
    }

    [Fact]
    public async Task Rfc8656_14_6_ReservedPort_IsHeldUntilClaimed_SoNoOtherProgramCanTakeIt()
    {
        // Only marking the port left it to any program's ephemeral bind: under load the claim then got 508
        // (turnutils_uclient's RTCP allocation did, in a CI run).
        await using var h = await TurnHarness.StartAsync();
        var first = await h.ClientAsync(h.ClientOptions() with { EvenPort = true, ReservePair = true });
        var reserved = first.RelayedEndPoint.Port + 1;
        Assert.False(await AnotherProgramCanBind(reserved));
        var second = await h.ClientAsync(h.ClientOptions() with { ReservationToken = first.ReservationToken });
        Assert.Equal(reserved, second.RelayedEndPoint.Port);

        // The claimed socket relays: a peer's datagram reaches the second client through the held port.
        var peer = await h.PeerAsync();
        await second.CreatePermissionAsync(peer.LocalEndPoint.Address);
        await peer.SendToAsync("held"u8.ToArray(), second.RelayedEndPoint);
        Assert.Equal("held"u8.ToArray(), (await ReceiveAsync(second)).Data);

        // An unclaimed reservation lets its port go when it expires, and when its allocation is deleted.
        var third = await h.ClientAsync(h.ClientOptions() with { EvenPort = true, ReservePair = true });
        Assert.False(await AnotherProgramCanBind(third.RelayedEndPoint.Port + 1));
        h.Time.Advance(TurnLimits.ReservationLifetime + TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
        Assert.Equal(0, h.Server.ReservationCount);
        Assert.True(await AnotherProgramCanBind(third.RelayedEndPoint.Port + 1));
        var fourth = await h.ClientAsync(h.ClientOptions() with { EvenPort = true, ReservePair = true });
        Assert.False(await AnotherProgramCanBind(fourth.RelayedEndPoint.Port + 1));
        await fourth.RefreshAsync(TimeSpan.Zero);
        Assert.True(await AnotherProgramCanBind(fourth.RelayedEndPoint.Port + 1));
    }

    [Fact]
    public async Task Rfc8656_14_6_Reservation_CountsAgainstTheUserQuotaAndTheServerTotal_WhileItLives()
    {
        await using (var h = await TurnHarness.StartAsync(o => o with { MaxAllocationsPerUser = 2 }))
        {
            var first = await h.ClientAsync(h.ClientOptions() with { EvenPort = true, ReservePair = true });
            Assert.Equal(1, h.Server.ReservationCount);
            Assert.Equal(486, (await Assert.ThrowsAsync<TurnException>(() => h.ClientAsync())).Code); // 1 + 1 reserved
            await h.ClientAsync(h.ClientOptions(user: "bob", password: "builder")); // another user's quota

            // Claiming the token turns the reservation's slot into the new allocation's.
            await h.ClientAsync(h.ClientOptions() with { ReservationToken = first.ReservationToken });
            Assert.Equal(0, h.Server.ReservationCount);
            Assert.Equal(486, (await Assert.ThrowsAsync<TurnException>(() => h.ClientAsync())).Code);
        }

        await using (var h = await TurnHarness.StartAsync(o => o with { MaxAllocationsPerUser = 2 }))
        {
            await h.ClientAsync();
            // A reserving Allocate needs two slots: one left is not enough, and nothing is held after the refusal.
            Assert.Equal(486, (await Assert.ThrowsAsync<TurnException>(() =>
                h.ClientAsync(h.ClientOptions() with { EvenPort = true, ReservePair = true }))).Code);
            Assert.Equal(0, h.Server.ReservationCount);
            await h.ClientAsync();
        }

        await using (var h = await TurnHarness.StartAsync(o => o with { MaxAllocations = 2, MaxAllocationsPerUser = 2 }))
        {
            await h.ClientAsync(h.ClientOptions() with { EvenPort = true, ReservePair = true });
            Assert.Equal(508, (await Assert.ThrowsAsync<TurnException>(() =>
                h.ClientAsync(h.ClientOptions(user: "bob", password: "builder")))).Code);

            // An unclaimed reservation expires after 30 s and gives its slot back.
            h.Time.Advance(TurnLimits.ReservationLifetime + TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
            Assert.Equal(0, h.Server.ReservationCount);
            await h.ClientAsync(h.ClientOptions(user: "bob", password: "builder"));
        }
    }

    [Fact]
    public async Task Rfc8656_14_6_Reservation_EndsWithTheAllocationThatMadeIt_PortAndQuotaComeBack()
    {
        // The attack: Allocate with EVEN-PORT R=1, then Refresh with LIFETIME 0, again and again, left every odd
        // relay port reserved and the user with no allocation. Here the reservation goes with its allocation.
        var first = FreeUdpRange(10);
        await using (var h = await TurnHarness.StartAsync(o => o with { MinPort = first, MaxPort = first + 9 }))
        {
            for (var i = 0; i < 5; i++)
            {
                var c = await h.ClientAsync(h.ClientOptions() with { EvenPort = true, ReservePair = true });
                Assert.NotNull(c.ReservationToken);
                Assert.Equal(1, h.Server.ReservationCount);
                await c.RefreshAsync(TimeSpan.Zero);
                Assert.Equal(0, h.Server.ReservationCount);
            }

            // Every port of the range is free again: ten allocations, then the range is exhausted.
            for (var i = 0; i < 10; i++)
            {
                await h.ClientAsync(h.ClientOptions(user: "bob", password: "builder"));
            }

            Assert.Equal(508, (await Assert.ThrowsAsync<TurnException>(() =>
                h.ClientAsync(h.ClientOptions(user: "bob", password: "builder")))).Code);
        }

        await using (var h = await TurnHarness.StartAsync(o => o with { MaxAllocationsPerUser = 2 }))
        {
            var c = await h.ClientAsync(h.ClientOptions() with { EvenPort = true, ReservePair = true });
            await c.RefreshAsync(TimeSpan.Zero);
            await h.ClientAsync(); // both of alice's slots are back
            await h.ClientAsync();
        }
    }

    [Fact]
    public async Task Rfc8656_7_IPv6Relay_AndDualAllocation()
    {
        await using var h = await TurnHarness.StartAsync();
        var v6 = await h.ClientAsync(h.ClientOptions() with { RelayFamily = AddressFamily.InterNetworkV6 });
        Assert.Equal(IPAddress.IPv6Loopback, v6.RelayedEndPoint.Address);
        var peer = await h.PeerAsync(IPAddress.IPv6Loopback);
        await v6.BindChannelAsync(peer.LocalEndPoint);
        await v6.SendAsync("six"u8.ToArray(), peer.LocalEndPoint);
        Assert.Equal("six"u8.ToArray(), (await ReceiveAsync(peer)).Data);
        await peer.SendToAsync("back"u8.ToArray(), v6.RelayedEndPoint);
        Assert.Equal("back"u8.ToArray(), (await ReceiveAsync(v6)).Data);

        // An IPv4 peer on an IPv6-only allocation: 443.
        Assert.Equal(443, (await Assert.ThrowsAsync<TurnException>(() => v6.CreatePermissionAsync(IPAddress.Loopback))).Code);

        var dual = await h.ClientAsync(h.ClientOptions() with { AlsoIPv6 = true });
        Assert.Equal(IPAddress.Loopback, dual.RelayedEndPoint.Address);
        Assert.Equal(IPAddress.IPv6Loopback, dual.RelayedEndPointV6!.Address);
    }

    [Fact]
    public async Task Rfc8656_7_IPv6Relay_NotConfigured_Gets440()
    {
        await using var h = await TurnHarness.StartAsync(o => o with { RelayAddressV6 = null });
        var e = await Assert.ThrowsAsync<TurnException>(() =>
            h.ClientAsync(h.ClientOptions() with { RelayFamily = AddressFamily.InterNetworkV6 }));
        Assert.Equal(440, e.Code);
    }

    [Fact]
    public async Task RestSecret_Credentials_WorkUntilTheyExpire()
    {
        await using var h = await TurnHarness.StartAsync(o => o with { Users = new Dictionary<string, string>(), SharedSecret = "north" });
        var now = h.Time.GetUtcNow();
        var (user, pass) = NatKit.Turn.Auth.RestCredentials.Issue("north"u8, "carol", now.AddMinutes(5));
        await h.ClientAsync(h.ClientOptions(user, pass));
        var (old, oldPass) = NatKit.Turn.Auth.RestCredentials.Issue("north"u8, "carol", now.AddSeconds(-1));
        Assert.Equal(401, (await Assert.ThrowsAsync<TurnException>(() => h.ClientAsync(h.ClientOptions(old, oldPass)))).Code);
        Assert.Equal(401, (await Assert.ThrowsAsync<TurnException>(() => h.ClientAsync(h.ClientOptions(user, "forged")))).Code);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Rfc8489_PasswordAlgorithms_Sha256AndMd5_BothAuthenticate(bool sha256)
    {
        await using var h = await TurnHarness.StartAsync();
        var c = await h.ClientAsync(h.ClientOptions() with { PreferSha256 = sha256 });
        await c.CreatePermissionAsync(IPAddress.Loopback);
    }

    [Fact]
    public async Task Rfc8489_7_3_WrongFingerprint_IsDiscarded_OnEveryMethod()
    {
        await using var h = await TurnHarness.StartAsync();
        await using var raw = await RawClient.OpenAsync(h.Udp);
        await raw.AllocateAsync();
        var peer = await h.PeerAsync();

        // A right FINGERPRINT is answered, and the answer carries one (RFC 8489 section 7.3).
        var good = await raw.TransactAsync(raw.Build(StunMethods.Binding, null, user: null, fingerprint: true));
        Assert.Equal(StunClass.SuccessResponse, good.Class);
        Assert.Contains(good.Attributes, a => a.Type == StunAttributeType.Fingerprint);

        var bad = new[]
        {
            raw.Build(StunMethods.Binding, null, user: null, fingerprint: true),
            raw.Build(TurnMethods.Allocate, RawClient.RequestUdp, user: null, fingerprint: true),
            raw.Build(TurnMethods.CreatePermission, (ref StunMessageWriter w) =>
                w.AddXorAddress(TurnAttributeType.XorPeerAddress, StunAddress.FromEndPoint(peer.LocalEndPoint)),
                fingerprint: true),
        };
        foreach (var message in bad)
        {
            message[^1] ^= 1; // one bit of the CRC
            await raw.SendAsync(message);
            var probe = raw.Build(StunMethods.Binding, null, user: null);
            await raw.SendAsync(probe);
            var reply = StunMessage.Parse(await raw.TryReceiveAsync(TimeSpan.FromSeconds(10)));
            Assert.Equal(StunMessage.Parse(probe)!.TransactionId, reply!.TransactionId); // the bad one, sent first, got nothing
        }

        Assert.Equal(1, h.Server.AllocationCount);
    }

    [Fact]
    public async Task Rfc8489_6_3_1_UnknownComprehensionRequired_Gets420_OnBindingToo()
    {
        await using var h = await TurnHarness.StartAsync();
        await using var raw = await RawClient.OpenAsync(h.Udp);
        static void Unknown(ref StunMessageWriter w) => w.AddUInt32(0x0777, 0);

        var binding = await raw.TransactAsync(raw.Build(StunMethods.Binding, Unknown, user: null));
        Assert.Equal(420, RawClient.ErrorCode(binding));
        var list = binding.Attributes.Single(a => a.Type == StunAttributeType.UnknownAttributes);
        Assert.Equal(new byte[] { 0x07, 0x77 }, list.Value);

        // A comprehension-optional one (0x8000 and up) is ignored, and a signed Allocate with 0x0777 gets 420 too.
        var optional = await raw.TransactAsync(raw.Build(StunMethods.Binding, (ref StunMessageWriter w) =>
            w.AddUInt32(0x8777, 0), user: null));
        Assert.Equal(StunClass.SuccessResponse, optional.Class);
        await raw.TransactAsync(raw.Build(TurnMethods.Allocate, RawClient.RequestUdp, user: null)); // the nonce
        var allocate = await raw.TransactAsync(raw.Build(TurnMethods.Allocate, (ref StunMessageWriter w) =>
        {
            RawClient.RequestUdp(ref w);
            Unknown(ref w);
        }));
        Assert.Equal(420, RawClient.ErrorCode(allocate));
        Assert.Equal(0, h.Server.AllocationCount);
    }

    [Fact]
    public async Task UnauthenticatedRequests_OverTheRate_GetNoAnswer()
    {
        await using var h = await TurnHarness.StartAsync(o => o with { UnauthenticatedRequestsPerSecond = 3 });
        await using var raw = await RawClient.OpenAsync(h.Udp);
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(401, RawClient.ErrorCode(await raw.TransactAsync(raw.Build(TurnMethods.Allocate, RawClient.RequestUdp, user: null))));
        }

        await raw.SendAsync(raw.Build(TurnMethods.Allocate, RawClient.RequestUdp, user: null));
        await raw.SendAsync(raw.Build(StunMethods.Binding, null, user: null));
        var reply = StunMessage.Parse(await raw.TryReceiveAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(StunMethods.Binding, reply!.Method); // the 4th Allocate, sent first, got no answer

        h.Time.Advance(TimeSpan.FromSeconds(1));
        var next = await raw.TransactAsync(raw.Build(TurnMethods.Allocate, RawClient.RequestUdp, user: null));
        Assert.Equal(401, RawClient.ErrorCode(next)); // the window turned
    }

    [Fact]
    public async Task Bandwidth_PerAllocation_IsCapped()
    {
        await using var h = await TurnHarness.StartAsync(o => o with { BandwidthBytesPerSecond = 1000 });
        var c = await h.ClientAsync();
        var peer = await h.PeerAsync();
        await c.BindChannelAsync(peer.LocalEndPoint);
        await c.SendAsync(new byte[900], peer.LocalEndPoint);
        await c.SendAsync(new byte[900], peer.LocalEndPoint); // over the bucket: dropped
        await c.SendAsync(new byte[10], peer.LocalEndPoint); // fits in what is left
        Assert.Equal(900, (await ReceiveAsync(peer)).Data.Length);
        Assert.Equal(10, (await ReceiveAsync(peer)).Data.Length);
        h.Time.Advance(TimeSpan.FromSeconds(1)); // everything sent so far has been handled: the bucket refills
        await c.SendAsync(new byte[950], peer.LocalEndPoint);
        Assert.Equal(950, (await ReceiveAsync(peer)).Data.Length);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task MaxRelayPayload_HoldsFromClientToPeer_TooBigSendIndicationOrChannelData_IsNotRelayed(bool channel)
    {
        // The attack run had 8,000-byte Send indications relayed: the limit held only from peer to client.
        await using var h = await TurnHarness.StartAsync();
        Assert.Equal(4096, h.Server.Options.MaxRelayPayload);
        var c = await h.ClientAsync();
        var peer = await h.PeerAsync();
        if (channel)
        {
            await c.BindChannelAsync(peer.LocalEndPoint);
        }
        else
        {
            await c.CreatePermissionAsync(IPAddress.Loopback);
        }

        await c.SendAsync(new byte[8000], peer.LocalEndPoint); // past the limit: dropped
        await c.SendAsync(new byte[4097], peer.LocalEndPoint);
        await c.SendAsync(new byte[4096], peer.LocalEndPoint); // at the limit: relayed
        Assert.Equal(4096, (await ReceiveAsync(peer)).Data.Length);

        // And from peer to client, as before.
        await peer.SendToAsync(new byte[4097], c.RelayedEndPoint);
        await peer.SendToAsync(new byte[4096], c.RelayedEndPoint);
        Assert.Equal(4096, (await ReceiveAsync(c)).Data.Length);
    }

    [Fact]
    public async Task Binding_IsAnsweredWithoutCredentials()
    {
        await using var h = await TurnHarness.StartAsync();
        await using var raw = await RawClient.OpenAsync(h.Udp);
        var m = await raw.TransactAsync(raw.Build(StunMethods.Binding, null, user: null));
        Assert.Equal(StunClass.SuccessResponse, m.Class);
    }

    [Fact]
    public async Task Fuzz_RandomAndMutatedDatagrams_NeverStopTheServer()
    {
        await using var h = await TurnHarness.StartAsync();
        var c = await h.ClientAsync();
        await using var raw = await RawClient.OpenAsync(h.Udp);
        var seeds = new List<byte[]>
        {
            raw.Build(TurnMethods.Allocate, RawClient.RequestUdp),
            raw.Build(TurnMethods.ChannelBind, (ref StunMessageWriter w) =>
            {
                w.AddUInt32(TurnAttributeType.ChannelNumber, 0x4000u << 16);
                w.AddXorAddress(TurnAttributeType.XorPeerAddress, StunAddress.FromAddress(IPAddress.Loopback, 9));
            }),
            raw.Build(TurnMethods.CreatePermission, (ref StunMessageWriter w) =>
                w.AddXorAddress(TurnAttributeType.XorPeerAddress, StunAddress.FromAddress(IPAddress.IPv6Loopback, 9))),
            new byte[] { 0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4 },
            new byte[] { 0x40, 0x00, 0xFF, 0xFF },
        };
        var random = new Random(7);
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        for (var i = 0; i < 3000; i++)
        {
            byte[] packet;
            if (i % 3 == 0)
            {
                packet = new byte[random.Next(0, 200)];
                random.NextBytes(packet);
            }
            else
            {
                packet = (byte[])seeds[random.Next(seeds.Count)].Clone();
                for (var k = random.Next(1, 4); k > 0 && packet.Length > 0; k--)
                {
                    packet[random.Next(packet.Length)] = (byte)random.Next(256);
                }

                if (random.Next(4) == 0)
                {
                    packet = packet[..random.Next(packet.Length + 1)];
                }
            }

            s.SendTo(packet, h.Udp);
            if (i % 100 == 99)
            {
                // Let the server drain its queue, so the kernel never drops what the test sends later.
                Assert.Equal(StunClass.SuccessResponse,
                    (await raw.TransactAsync(raw.Build(StunMethods.Binding, null, user: null))).Class);
            }
        }

        // Still serving: the existing allocation relays and a new one can be made.
        var peer = await h.PeerAsync();
        await c.BindChannelAsync(peer.LocalEndPoint);
        await c.SendAsync("alive"u8.ToArray(), peer.LocalEndPoint);
        Assert.Equal("alive"u8.ToArray(), (await ReceiveAsync(peer)).Data);
        await h.ClientAsync(h.ClientOptions(user: "bob", password: "builder"));
    }

    [Fact]
    public async Task Fuzz_TcpGarbage_ClosesThatConnectionOnly()
    {
        await using var h = await TurnHarness.StartAsync();
        await using (var conn = await SystemNetwork.Instance.ConnectTcpAsync(h.Tcp))
        {
            await conn.Stream.WriteAsync(new byte[] { 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3 });
            var buffer = new byte[16];
            using var cts = TurnHarness.Deadline();
            Assert.Equal(0, await conn.Stream.ReadAsync(buffer, cts.Token)); // server hung up
        }

        var c = await h.ClientAsync(h.ClientOptions(transport: TurnTransport.Tcp));
        Assert.NotEqual(0, c.RelayedEndPoint.Port);
    }

    [Fact]
    public async Task TcpClientDisconnect_DeletesItsAllocation()
    {
        await using var h = await TurnHarness.StartAsync();
        var c = await h.ClientAsync(h.ClientOptions(transport: TurnTransport.Tcp));
        Assert.Equal(1, h.Server.AllocationCount);
        await c.DisposeAsync();
        using var cts = TurnHarness.Deadline();
        while (h.Server.AllocationCount != 0)
        {
            await Task.Yield(); // the server notices the FIN on its own loop
            cts.Token.ThrowIfCancellationRequested();
        }
    }

    [Fact]
    public void Options_Validation_NamesTheField()
    {
        var e = Assert.Throws<ArgumentException>(() => new TurnServerOptions().Validate());
        Assert.Contains("Users or a SharedSecret", e.Message, StringComparison.Ordinal);
        var e2 = Assert.Throws<ArgumentException>(() => new TurnServerOptions { SharedSecret = "x", MinPort = 5, MaxPort = 4 }.Validate());
        Assert.Contains("MinPort", e2.Message, StringComparison.Ordinal);
        var e3 = Assert.Throws<ArgumentException>(() => new TurnServerOptions { SharedSecret = "x", RelaySocketBufferBytes = -1 }.Validate());
        Assert.Contains("RelaySocketBufferBytes", e3.Message, StringComparison.Ordinal);
    }

    /// <summary>The first of <paramref name="count"/> consecutive UDP ports on loopback, even, that nothing holds
    /// now (below the ephemeral range, so a socket bound meanwhile is unlikely to take one).</summary>
    private static int FreeUdpRange(int count)
    {
        var random = new Random();
        for (var attempt = 0; attempt < 100; attempt++)
        {
            var first = 20000 + (random.Next(5000) * 2);
            var sockets = new List<Socket>();
            try
            {
                for (var p = first; p < first + count; p++)
                {
                    var s = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
                    sockets.Add(s);
                    s.Bind(new IPEndPoint(IPAddress.Loopback, p));
                }

                return first;
            }
            catch (SocketException)
            {
                // taken: try another range
            }
            finally
            {
                foreach (var s in sockets)
                {
                    s.Dispose();
                }
            }
        }

        throw new InvalidOperationException($"no {count} consecutive free UDP ports found");
    }

    private static int FreeUdpPort()
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        s.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)s.LocalEndPoint!).Port;
    }
}
