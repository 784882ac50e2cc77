using System.Net;
using System.Net.Sockets;
using NatKit.Net;
using NatKit.Stun.Client;

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
/// packets: missing answers are results.
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
        var notes = new List<string>();
        await using var s1 = await BindAsync(cancellationToken);
        var t1 = await _client.BindingAsync(s1, _server, default, cancellationToken);
        if (t1?.MappedAddress is null || !t1.IsSuccess)
        {
            notes.Add(t1 is null ? "no answer to a Binding request: UDP blocked or server down"
                : $"the server answered {t1.ErrorCode} {t1.ErrorReason}");
            return new NatBehavior { Server = _server, Reachable = false, LocalEndPoint = s1.LocalEndPoint, Notes = notes };
        }

        var mapped = t1.MappedAddress;
        var local = s1.LocalEndPoint;
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

    private async Task<NatMapping> MappingAsync(IDatagramSocket socket, IPEndPoint mapped, IPEndPoint other,
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
        await using var socket = await BindAsync(ct);
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

    private async Task<bool> HairpinAsync(IDatagramSocket socket, IPEndPoint mapped, CancellationToken ct)
    {
        var buffer = new byte[StunMessageReader.HeaderLength + 8];
        var id = StunTransactionId.NewRandom();
        var w = new StunMessageWriter(buffer, StunMethods.Binding, StunClass.Request, id);
        w.AddFingerprint();
        for (var attempt = 0; attempt < 3; attempt++)
        {
            var receive = ReceiveIdAsync(socket, id, _options.HairpinTimeout / 3, ct);
            await socket.SendToAsync(buffer, mapped, ct);
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
        var learn = await _client.BindingAsync(x, _server, default, ct);
        if (learn?.MappedAddress is null)
        {
            return null;
        }

        await Task.Delay(idle, _network.TimeProvider, ct);
        await using var y = await BindAsync(ct);
        var buffer = new byte[64];
        for (var attempt = 0; attempt < 3; attempt++)
        {
            var id = StunTransactionId.NewRandom();
            var w = new StunMessageWriter(buffer, StunMethods.Binding, StunClass.Request, id);
            w.AddResponsePort((ushort)learn.MappedAddress.Port);
            w.AddFingerprint();
            var length = w.Length;
            var receive = ReceiveIdAsync(x, id, _options.BindingProbeTimeout / 3, ct);
            await y.SendToAsync(buffer.AsMemory(0, length), _server, ct);
            if (await receive)
            {
                return true;
            }
        }

        return false;
    }

    // Waits for any STUN message with this transaction ID (request or response) on the socket.
    private async Task<bool> ReceiveIdAsync(IDatagramSocket socket, StunTransactionId id, TimeSpan wait,
        CancellationToken ct)
    {
        var buffer = new byte[2048];
        using var timeout = new CancellationTokenSource(wait, _network.TimeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, ct);
        while (true)
        {
            ReceivedDatagram d;
            try
            {
                d = await socket.ReceiveFromAsync(buffer, linked.Token);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                return false;
            }

            if (StunMessageReader.TryParse(buffer.AsSpan(0, d.Length), out var r) && r.TransactionId == id)
            {
                return true;
            }
        }
    }

    private async Task<IDatagramSocket> BindAsync(CancellationToken ct)
    {
        var address = _options.LocalAddress ?? (_server.AddressFamily == AddressFamily.InterNetworkV6
            ? IPAddress.IPv6Any
            : IPAddress.Any);
        return await _network.BindUdpAsync(new IPEndPoint(address, 0), ct);
    }
}
