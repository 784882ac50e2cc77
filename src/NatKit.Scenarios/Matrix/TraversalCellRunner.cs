using System.Net;
using System.Text;
using NatKit.Lab;
using NatKit.Traversal;
using NatKit.Traversal.Identity;
using NatKit.Traversal.Rendezvous;

namespace NatKit.Scenarios.Matrix;

/// <summary>
/// The matrix's cell runner: the cell's servers (STUN, TURN when the cell has a relay, and NatKit's rendezvous),
/// two <see cref="TraversalNode"/>s on the cell's peers, A connecting to B, and then a datagram each way over the
/// connection, since a path nothing crosses is not a path. The outcome is what A's side reports.
/// </summary>
public static class TraversalCellRunner
{
    /// <summary>The rendezvous service's port on the rendezvous host (the STUN server holds 3478 and 3479).</summary>
    public const int RendezvousPort = 3480;

    /// <summary>Tries per datagram of the final exchange (links may lose some).</summary>
    private const int ExchangeTries = 20;

    public static MatrixOutcome Run(MatrixCellLab cell, MatrixOptions options)
    {
        ArgumentNullException.ThrowIfNull(cell);
        ArgumentNullException.ThrowIfNull(options);
        return cell.Lab.Run(() => RunAsync(cell, options));
    }

    private static async Task<MatrixOutcome> RunAsync(MatrixCellLab cell, MatrixOptions options)
    {
        await MatrixServices.StartAsync(cell);
        var rendezvous = new IPEndPoint(MatrixCellLab.RendezvousAddress, RendezvousPort);
        await using var service = await RendezvousServer.StartAsync(cell.RendezvousHost,
            new RendezvousServerOptions { Listen = rendezvous });
        var traversal = new TraversalOptions
        {
            Rendezvous = rendezvous,
            // Three destinations on two addresses: enough to tell a sequential allocator's step from random ports.
            StunServers =
            [
                new(MatrixCellLab.RendezvousAddress, MatrixCellLab.ServicePort),
                new(MatrixCellLab.SecondStunAddress, MatrixCellLab.ServicePort),
                new(MatrixCellLab.SecondStunAddress, MatrixCellLab.ServicePort + 1),
            ],
            Turn = cell.Turn is { } turn
                ? new TurnServerCredentials(turn, MatrixCellLab.TurnUser, MatrixCellLab.TurnPassword)
                : null,
            Budget = options.Budget,
            ConnectTimeout = options.ConnectTimeout,
            Random = cell.Lab.Random,
        };
        await using var a = await TraversalNode.StartAsync(cell.A, new IPEndPoint(IPAddress.Any, 0),
            NodeIdentity.Create(), traversal);
        await using var b = await TraversalNode.StartAsync(cell.B, new IPEndPoint(IPAddress.Any, 0),
            NodeIdentity.Create(), traversal);
        var accepted = b.AcceptAsync();
        PeerConnection ab;
        try
        {
            ab = await a.ConnectAsync(b.Id);
        }
        catch (Exception e) when (e is TraversalException or RendezvousException)
        {
            return MatrixOutcome.Failed(e.Message);
        }

        await using var _ = ab;
        await using var ba = await accepted;
        var probes = ab.ProbesSent + ba.ProbesSent;
        if (!await ExchangeAsync(ab, ba, cell.Lab.TimeProvider) || !await ExchangeAsync(ba, ab, cell.Lab.TimeProvider))
        {
            return MatrixOutcome.Failed($"connected ({ab}) but no datagram crossed", probes);
        }

        return new MatrixOutcome(Path(ab.Path), Method(ab.Method), ab.TimeToConnect, probes, ab.Rtt, ab.ToString());
    }

    /// <summary>Sends from one side until the other receives the datagram.</summary>
    private static async Task<bool> ExchangeAsync(PeerConnection from, PeerConnection to, TimeProvider time)
    {
        var payload = Encoding.ASCII.GetBytes("natkit matrix");
        var buffer = new byte[64];
        for (var i = 0; i < ExchangeTries; i++)
        {
            await from.Socket.SendToAsync(payload, from.RemoteEndPoint);
            using var wait = new CancellationTokenSource(TimeSpan.FromMilliseconds(500), time);
            try
            {
                var got = await to.Socket.ReceiveFromAsync(buffer, wait.Token);
                if (buffer.AsSpan(0, got.Length).SequenceEqual(payload))
                {
                    return true;
                }
            }
            catch (OperationCanceledException)
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

    private static MatrixMethod Method(TraversalMethod method) => method switch
    {
        TraversalMethod.Host => MatrixMethod.Host,
        TraversalMethod.Reflexive => MatrixMethod.Reflexive,
        TraversalMethod.PeerReflexive => MatrixMethod.PeerReflexive,
        TraversalMethod.PortMapped => MatrixMethod.PortMapped,
        TraversalMethod.Prediction => MatrixMethod.Prediction,
        TraversalMethod.Birthday => MatrixMethod.Birthday,
        _ => MatrixMethod.Relay,
    };
}

