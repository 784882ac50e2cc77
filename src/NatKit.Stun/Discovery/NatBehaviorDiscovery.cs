using System.Net;
using System.Net.Sockets;
using NatKit.Net;
using NatKit.Stun.Client;
using NatKit.Stun.Transactions;

namespace NatKit.Stun.Discovery;

/// <summary>
/// NAT behaviour discovery against an RFC 5780 server (RFC 5780 section 4), over any <see cref="INetwork"/>:
/// <list type="bullet">
/// <item>Test I (one socket, to the primary address): reachable? mapped address, OTHER-ADDRESS, port preserved,
/// no NAT when the mapped address is our own.</item>
/// <item>Mapping (section 4.3), same socket: II to alternate address/primary port; equal to I is EIM, else III
/// to alternate address/port; equal to II is ADM, else APDM.</item>
/// <item>Filtering (section 4.4), on a fresh socket so the mapping tests opened nothing: I, then CHANGE-REQUEST
/// (address and port): an answer is EIF; else CHANGE-REQUEST (port only): an answer is ADF, none is APDF.</item>
/// <item>Hairpinning (section 4.5): from the test-I socket, a Binding request to our own mapped address; receiving
/// it back means the NAT hairpins.</item>
/// <item>Binding lifetime (section 4.6), optional: socket X learns its mapping, idles T, then socket Y asks the
/// server (RESPONSE-PORT = X's mapped port) to answer to X's mapping; binary search on T.</item>
/// </list>
/// All waits use the network's clock (virtual in the lab). Nothing here throws for a network that drops
/// packets: missing answers are results. Every socket runs under a <see cref="DatagramMultiplexer"/> with its
/// <see cref="StunTransactions"/>, so the test-I socket may be a shared one (<see cref="RunAsync(StunTransactions,
/// CancellationToken)"/>): uTP or TURN traffic on it is left alone.
/// </summary>
public sealed class NatBehaviorDiscovery
{
    private readonly INetwork _network;
    private readonly IPEndPoint _server;
    private readonly NatDiscoveryOptions _options;
    private readonly StunClient _client;

    public NatBehaviorDiscovery(INetwork network, IPEndPoint server, NatDiscoveryOptions? options = null)
    {
        _network = network ?? throw new ArgumentNullException(nameof(network));
        _server = server ?? throw new ArgumentNullException(nameof(server));
        _options = options ?? new NatDiscoveryOptions();
        _client = new StunClient(network, _options.Client);
    }

    /// <summary>Runs the tests the options ask for and returns what they found.</summary>
    public async Task<NatBehavior> RunAsync(CancellationToken cancellationToken = default)
    {
        await using var s1 = await BindAsync(cancellationToken);
        return await RunAsync(s1.Transactions, cancellationToken);
    }

    /// <summary>
    /// As <see cref="RunAsync(CancellationToken)"/>, with test I, the mapping tests and hairpinning on a shared
    /// socket (so the behaviour found is that of the socket a node traverses with); filtering and the binding
    /// lifetime still take fresh sockets of their own, as RFC 5780 sections 4.4 and 4.6 require.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="shared"/> has no socket.</exception>
    public async Task<NatBehavior> RunAsync(StunTransactions shared, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(shared);
        var local = shared.Multiplexer?.LocalEndPoint ??
                    throw new ArgumentException("shared: a transaction table with no socket", nameof(shared));

        var notes = new List<string>();
        var s1 = shared;
        var t1 = await _client.BindingAsync(s1, _server, default, cancellationToken);
        if (t1?.MappedAddress is null || !t1.IsSuccess)
        {
            notes.Add(t1 is null ? "no answer to a Binding request: UDP blocked or server down"
                : $"the server answered {t1.ErrorCode} {t1.ErrorReason}");
            return new NatBehavior { Server = _server, Reachable = false, LocalEndPoint = local, Notes = notes };
        }

        var mapped = t1.MappedAddress;
        var noNat = mapped.Port == local.Port &&
                    (mapped.Address.Equals(local.Address) || _network.LocalAddresses.Contains(mapped.Address));
        var portPreserved = mapped.Port == local.Port;
        var other = t1.OtherAddress;
        if (other is null)
        {
            notes.Add("the server sent no OTHER-ADDRESS: it does not support RFC 5780, so mapping and filtering " +
                      "cannot be tested");
            return new NatBehavior
            {
                Server = _server,
                Reachable = true,
                LocalEndPoint = local,
                MappedEndPoint = mapped,
                Mapping = noNat ? NatMapping.NoNat : NatMapping.Unknown,
                PortPreserved = portPreserved,
                Notes = notes,
            };
        }

        var mapping = noNat ? NatMapping.NoNat : await MappingAsync(s1, mapped, other, notes, cancellationToken);
        var filtering = await FilteringAsync(notes, cancellationToken);
        bool? hairpinning = null;
        if (_options.TestHairpinning && !noNat)
        {
            hairpinning = await HairpinAsync(s1, mapped, cancellationToken);
        }

        TimeSpan? lifetime = null;
        var lowerBound = false;
        if (_options.MeasureBindingLifetime)
        {
            (lifetime, lowerBound) = await LifetimeAsync(notes, cancellationToken);
        }

        return new NatBehavior
        {
            Server = _server,
            Reachable = true,
            ServerSupportsRfc5780 = true,
            LocalEndPoint = local,
            MappedEndPoint = mapped,
            Mapping = mapping,
            Filtering = filtering,
            Hairpinning = hairpinning,
            PortPreserved = portPreserved,
            BindingLifetime = lifetime,
            BindingLifetimeIsLowerBound = lowerBound,
            Notes = notes,
        };
    }

    private async Task<NatMapping> MappingAsync(StunTransactions socket, IPEndPoint mapped, IPEndPoint other,
        List<string> notes, CancellationToken ct)
    {
        var t2 = await _client.BindingAsync(socket, new IPEndPoint(other.Address, _server.Port), default, ct);
        if (t2?.MappedAddress is null)
        {
            notes.Add("no answer from the alternate address (test II): mapping unknown");
            return NatMapping.Unknown;
        }

        if (t2.MappedAddress.Equals(mapped))
        {
            return NatMapping.EndpointIndependent;
        }

        var t3 = await _client.BindingAsync(socket, other, default, ct);
        if (t3?.MappedAddress is null)
        {
            notes.Add("no answer from the alternate address and port (test III): mapping unknown");
            return NatMapping.Unknown;
        }

        return t3.MappedAddress.Equals(t2.MappedAddress)
            ? NatMapping.AddressDependent
            : NatMapping.AddressAndPortDependent;
    }

    private async Task<NatFiltering> FilteringAsync(List<string> notes, CancellationToken ct)
    {
        await using var fresh = await BindAsync(ct);
        var socket = fresh.Transactions;
        var f1 = await _client.BindingAsync(socket, _server, default, ct);
        if (f1 is null)
        {
            notes.Add("no answer on the filtering socket (test I): filtering unknown");
            return NatFiltering.Unknown;
        }

        var f2 = await _client.BindingAsync(socket, _server,
            new StunBindingRequest { ChangeAddress = true, ChangePort = true }, ct);
        if (f2 is { IsSuccess: true })
        {
            return NatFiltering.EndpointIndependent;
        }

        var f3 = await _client.BindingAsync(socket, _server, new StunBindingRequest { ChangePort = true }, ct);
        return f3 is { IsSuccess: true } ? NatFiltering.AddressDependent : NatFiltering.AddressAndPortDependent;
    }

    private async Task<bool> HairpinAsync(StunTransactions socket, IPEndPoint mapped, CancellationToken ct)
    {
        var buffer = new byte[StunMessageReader.HeaderLength + 8];
        var id = StunTransactionId.NewRandom();
        var w = new StunMessageWriter(buffer, StunMethods.Binding, StunClass.Request, id);
        w.AddFingerprint();
        using var back = Expect(socket, id);
        for (var attempt = 0; attempt < 3; attempt++)
        {
            var receive = ReceiveIdAsync(back, _options.HairpinTimeout / 3, ct);
            await back.SendToAsync(buffer, mapped, ct);
            if (await receive)
            {
                return true;
            }
        }

        return false;
    }

    private async Task<(TimeSpan? Lifetime, bool LowerBound)> LifetimeAsync(List<string> notes, CancellationToken ct)
    {
        var first = await AliveAfterAsync(_options.BindingLifetimeMax, ct);
        if (first is null)
        {
            notes.Add("binding lifetime: the server did not honour RESPONSE-PORT, not measured");
            return (null, false);
        }

        if (first.Value)
        {
            return (_options.BindingLifetimeMax, true);
        }

        var alive = TimeSpan.Zero;
        var dead = _options.BindingLifetimeMax;
        while (dead - alive > _options.BindingLifetimeResolution)
        {
            var mid = alive + ((dead - alive) / 2);
            if (await AliveAfterAsync(mid, ct) == true)
            {
                alive = mid;
            }
            else
            {
                dead = mid;
            }
        }

        notes.Add($"binding lifetime between {alive.TotalSeconds:0.#} s and {dead.TotalSeconds:0.#} s");
        return (alive, false);
    }

    // True: X's mapping still delivered after idling; false: it did not; null: the test itself failed.
    private async Task<bool?> AliveAfterAsync(TimeSpan idle, CancellationToken ct)
    {
        await using var x = await BindAsync(ct);
        var learn = await _client.BindingAsync(x.Transactions, _server, default, ct);
        if (learn?.MappedAddress is null)
        {
            return null;
        }

        await Task.Delay(idle, _network.TimeProvider, ct);
        await using var y = await BindAsync(ct);
        var buffer = new byte[64];
        using var back = Expect(x.Transactions, default);
        for (var attempt = 0; attempt < 3; attempt++)
        {
            var id = StunTransactionId.NewRandom();
            var w = new StunMessageWriter(buffer, StunMethods.Binding, StunClass.Request, id);
            w.AddResponsePort((ushort)learn.MappedAddress.Port);
            w.AddFingerprint();
            var length = w.Length;
            back.Id = id;
            var receive = ReceiveIdAsync(back, _options.BindingProbeTimeout / 3, ct);
            await y.Multiplexer.SendToAsync(buffer.AsMemory(0, length), _server, ct);
            if (await receive)
            {
                return true;
            }
        }

        return false;
    }

    // A sub-socket of the shared socket for any STUN message (request or response) with one transaction id (the
    // hairpinned request, the answer RESPONSE-PORT sends to X's mapping): the id may change between attempts.
    private static IdSocket Expect(StunTransactions socket, StunTransactionId id)
    {
        var expected = new IdSocket { Id = id };
        expected.Socket = socket.Multiplexer!.CreateSocket(expected.Matches, DatagramClaim.ByTransaction, 4);
        return expected;
    }

    // Waits for the next datagram on the id's sub-socket.
    private async Task<bool> ReceiveIdAsync(IdSocket socket, TimeSpan wait, CancellationToken ct)
    {
        var buffer = new byte[2048];
        using var timeout = new CancellationTokenSource(wait, _network.TimeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, ct);
        try
        {
            await socket.Socket.ReceiveFromAsync(buffer, linked.Token);
            return true;
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return false;
        }
    }

    private async Task<Bound> BindAsync(CancellationToken ct)
    {
        var address = _options.LocalAddress ?? (_server.AddressFamily == AddressFamily.InterNetworkV6
            ? IPAddress.IPv6Any
            : IPAddress.Any);
        var socket = await _network.BindUdpAsync(new IPEndPoint(address, 0), ct);
        var multiplexer = new DatagramMultiplexer(socket, receiveBufferSize: 2048); // Bindings and their answers only
        return new Bound(multiplexer, new StunTransactions(multiplexer, _network.TimeProvider));
    }

    /// <summary>A fresh socket of discovery's own, under a multiplexer and a transaction table.</summary>
    private sealed record Bound(DatagramMultiplexer Multiplexer, StunTransactions Transactions) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            Transactions.Dispose();
            await Multiplexer.DisposeAsync();
        }
    }

    private sealed class IdSocket : IDisposable
    {
        public StunTransactionId Id;
        public DatagramSubSocket Socket = null!;

        public bool Matches(ReadOnlySpan<byte> datagram, IPEndPoint source) =>
            DatagramShape.IsStun(datagram) &&
            StunTransactionId.Read(datagram.Slice(8, StunTransactionId.Size)) == Id;

        public ValueTask<int> SendToAsync(ReadOnlyMemory<byte> datagram, IPEndPoint remote, CancellationToken ct) =>
            Socket.SendToAsync(datagram, remote, ct);

        public void Dispose() => Socket.Dispose();
    }
}
