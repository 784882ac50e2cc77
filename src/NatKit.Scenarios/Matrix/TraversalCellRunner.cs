using System.Net;
using System.Text;
using NatKit.Lab;
using NatKit.Net;
using NatKit.Packets;
using NatKit.PortMapping;
using NatKit.Traversal;
using NatKit.Traversal.HardNat;
using NatKit.Traversal.Identity;
using NatKit.Traversal.Rendezvous;

namespace NatKit.Scenarios.Matrix;

/// <summary>
/// The matrix's cell runner: the cell's servers (STUN, TURN when the cell has a relay, and NatKit's rendezvous),
/// two <see cref="TraversalNode"/>s on the cell's peers, A connecting to B, and then a datagram each way over the
/// connection, since a path nothing crosses is not a path. The outcome is what A's side reports.
/// </summary>
internal static class TraversalCellRunner
{
    /// <summary>The rendezvous service's port on the rendezvous host (the STUN server holds 3478 and 3479).</summary>
    public const int RendezvousPort = 3480;

    /// <summary>Tries per datagram of the final exchange (links may lose some).</summary>
    private const int ExchangeTries = 20;

    public static MatrixOutcome Run(MatrixCellLab cell, MatrixOptions options)
    {
        ArgumentNullException.ThrowIfNull(cell);
        ArgumentNullException.ThrowIfNull(options);
        return cell.Lab.Run(async () =>
        {
            await MatrixServices.StartAsync(cell);
            var any = new IPEndPoint(IPAddress.Any, 0);
            return await ConnectAsync(new Sides(cell.RendezvousHost, cell.A, any, cell.B, any)
                {
                    PortMapA = cell.PortMapA is { } ga ? MapThrough(cell.A, ga) : null,
                    PortMapB = cell.PortMapB is { } gb ? MapThrough(cell.B, gb) : null,
                }, cell.Turn, options, cell.Lab.Random, cell.Lab.TimeProvider, CancellationToken.None);
        });
    }

    /// <summary>
    /// The same traversal on a namespace cell (`natkit lab matrix --netns`): the nodes run in this process on real
    /// sockets inside the peers' namespaces, bound to the peers' addresses at <see cref="NetnsMatrixCell.AgentPort"/>
    /// (where a DMZ router leads its public port), through the cell's real NATs, in wall time.
    /// </summary>
    public static Task<MatrixOutcome> RunNetnsAsync(NetnsMatrixCell cell, MatrixOptions options,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(cell);
        ArgumentNullException.ThrowIfNull(options);
        var sides = new Sides(cell.Network("rendezvous"),
            cell.Network("a"), new IPEndPoint(cell.Address("a"), NetnsMatrixCell.AgentPort),
            cell.Network("b"), new IPEndPoint(cell.Address("b"), NetnsMatrixCell.AgentPort))
        {
            // a namespace's network does not list its addresses: the requests go from the peer's own
            PortMapA = NetnsPortMapGateway(cell, "a", options) is { } ga ? MapThrough(cell.Network("a"), ga, cell.Address("a")) : null,
            PortMapB = NetnsPortMapGateway(cell, "b", options) is { } gb ? MapThrough(cell.Network("b"), gb, cell.Address("b")) : null,
        };
        return ConnectAsync(sides, cell.Turn, options, null, TimeProvider.System, cancellationToken);
    }

    /// <summary>Where a namespace cell's peer asks for a mapping (`--portmap` with a type whose router offers one):
    /// its router's inside address, or null.</summary>
    internal static IPEndPoint? NetnsPortMapGateway(NetnsMatrixCell cell, string role, MatrixOptions options) =>
        options.PortMapping ? MatrixLab.PortMapGateway(role == "a" ? cell.TypeA : cell.TypeB, role == "a" ? 0 : 1) : null;

    /// <summary>Where the rendezvous and the two peers run, what the peers bind, and how each asks for a mapping.</summary>
    private sealed record Sides(INetwork Rendezvous, INetwork A, IPEndPoint BindA, INetwork B, IPEndPoint BindB)
    {
        public PortMapRequest? PortMapA { get; init; }

        public PortMapRequest? PortMapB { get; init; }
    }

    /// <summary>A node's way to ask its router for a UDP mapping: PCP, then NAT-PMP (NatKit.PortMapping's
    /// <see cref="PortMapper"/>), kept renewed until the node stops.</summary>
    public static PortMapRequest MapThrough(INetwork network, IPEndPoint gateway, IPAddress? local = null) => async (port, ct) =>
    {
        var lease = await new PortMapper(network, gateway, new PortMappingClientOptions { LocalAddress = local })
            .MapAsync(IpProtocol.Udp, port, TimeSpan.FromHours(2), port, cancellationToken: ct);
        return lease is null ? null : new PortMappedEndPoint(lease.External, lease);
    };

    private static async Task<MatrixOutcome> ConnectAsync(Sides sides, IPEndPoint? turn, MatrixOptions options,
        Random? random, TimeProvider time, CancellationToken cancellationToken)
    {
        await using var service = await StartRendezvousAsync(sides.Rendezvous, cancellationToken);
        var traversal = NodeOptions(turn, options.Budget, options.ConnectTimeout, random);
        await using var a = await TraversalNode.StartAsync(sides.A, sides.BindA, NodeIdentity.Create(),
            traversal with { PortMap = sides.PortMapA }, cancellationToken: cancellationToken);
        await using var b = await TraversalNode.StartAsync(sides.B, sides.BindB, NodeIdentity.Create(),
            traversal with { PortMap = sides.PortMapB }, cancellationToken: cancellationToken);
        // B's side ends within the connect timeout too: a connection A has and B never accepted is a failed cell,
        // not a run that waits forever.
        using var window = new CancellationTokenSource(options.ConnectTimeout + TimeSpan.FromSeconds(5), time);
        using var acceptWindow = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, window.Token);
        var accepted = b.AcceptAsync(acceptWindow.Token);
        PeerConnection ab;
        try
        {
            ab = await a.ConnectAsync(b.Id, cancellationToken);
        }
        catch (Exception e) when (e is TraversalException or RendezvousException)
        {
            return MatrixOutcome.Failed(e.Message);
        }

        await using var _ = ab;
        PeerConnection ba;
        try
        {
            ba = await accepted;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return MatrixOutcome.Failed($"A connected ({ab}) but B never accepted the connection", ab.ProbesSent);
        }

        await using var __ = ba;
        var probes = ab.ProbesSent + ba.ProbesSent;
        if (!await ExchangeAsync(ab, ba, time) || !await ExchangeAsync(ba, ab, time))
        {
            return MatrixOutcome.Failed($"connected ({ab}) but no datagram crossed", probes);
        }

        return Outcome(ab, probes);
    }

    /// <summary>The cell's rendezvous service (<see cref="MatrixCellLab.RendezvousAddress"/>, <see cref="RendezvousPort"/>).</summary>
    internal static Task<RendezvousServer> StartRendezvousAsync(INetwork network, CancellationToken cancellationToken) =>
        RendezvousServer.StartAsync(network,
            new RendezvousServerOptions { Listen = new IPEndPoint(MatrixCellLab.RendezvousAddress, RendezvousPort) },
            cancellationToken: cancellationToken);

    /// <summary>What a cell's node is told: the cell's rendezvous, its STUN servers, its relay (if any).</summary>
    internal static TraversalOptions NodeOptions(IPEndPoint? turn, ProbeBudget budget, TimeSpan connectTimeout,
        Random? random) => new()
    {
        Rendezvous = new IPEndPoint(MatrixCellLab.RendezvousAddress, RendezvousPort),
        // Three destinations on two addresses: enough to tell a sequential allocator's step from random ports.
        StunServers =
        [
            new(MatrixCellLab.RendezvousAddress, MatrixCellLab.ServicePort),
            new(MatrixCellLab.SecondStunAddress, MatrixCellLab.ServicePort),
            new(MatrixCellLab.SecondStunAddress, MatrixCellLab.ServicePort + 1),
        ],
        Turn = turn is not null ? new TurnServerCredentials(turn, MatrixCellLab.TurnUser, MatrixCellLab.TurnPassword) : null,
        Budget = budget,
        ConnectTimeout = connectTimeout,
        Random = random,
    };

    /// <summary>The outcome a connection reports.</summary>
    internal static MatrixOutcome Outcome(PeerConnection connection, long probes) =>
        new(Path(connection.Path), connection.Method, connection.TimeToConnect, probes, connection.Rtt, connection.ToString());

    /// <summary>Sends from one side until the other receives the datagram.</summary>
    private static Task<bool> ExchangeAsync(PeerConnection from, PeerConnection to, TimeProvider time)
    {
        var payload = Encoding.ASCII.GetBytes("natkit matrix");
        return SendUntilReceivedAsync(from, payload, to.Socket, payload, time, CancellationToken.None);
    }

    /// <summary>Sends <paramref name="send"/> over <paramref name="from"/> (up to 20 times, half a second apart)
    /// until <paramref name="receiveOn"/> gets <paramref name="expect"/>: the matrix's proof that a path carries data,
    /// in one process (the other side's socket) or across two (the answer on the same connection). Plain awaits: it
    /// runs on the lab's loop too.</summary>
    internal static async Task<bool> SendUntilReceivedAsync(PeerConnection from, byte[] send, IDatagramSocket receiveOn,
        byte[] expect, TimeProvider time, CancellationToken cancellationToken)
    {
        var buffer = new byte[64];
        for (var i = 0; i < ExchangeTries; i++)
        {
            await from.Socket.SendToAsync(send, from.RemoteEndPoint, cancellationToken);
            using var window = new CancellationTokenSource(TimeSpan.FromMilliseconds(500), time);
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, window.Token);
            try
            {
                var got = await receiveOn.ReceiveFromAsync(buffer, wait.Token);
                if (buffer.AsSpan(0, got.Length).SequenceEqual(expect))
                {
                    return true;
                }
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
            }
        }

        return false;
    }

    private static MatrixPath Path(PathKind path) => path switch
    {
        PathKind.Direct => MatrixPath.Direct,
        PathKind.Hairpin => MatrixPath.Hairpin,
        _ => MatrixPath.Relay,
    };
}

