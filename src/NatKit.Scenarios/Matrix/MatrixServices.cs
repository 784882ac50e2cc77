using System.Net;
using NatKit.Net;
using NatKit.Stun.Server;
using NatKit.Turn.Policy;
using NatKit.Turn.Server;

namespace NatKit.Scenarios.Matrix;

/// <summary>
/// The servers of a cell's internet: STUN on both rendezvous addresses (RFC 5780 mode, so a peer can profile its
/// NAT's port allocation against two addresses), and NatKit's TURN server when the cell has a relay, allowing the
/// cell's public addresses as peers. In a lab (started from <c>lab.Run</c>) they may be left running: the lab is
/// thrown away with them; in namespaces <see cref="NetnsMatrixCell"/> disposes them.
/// </summary>
public sealed record MatrixServices(StunServer Stun, TurnServer? Turn) : IAsyncDisposable
{
    public static Task<MatrixServices> StartAsync(MatrixCellLab cell, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(cell);
        return StartAsync(cell.RendezvousHost, cell.TurnHost, cancellationToken);
    }

    /// <summary>STUN on <paramref name="rendezvous"/> (which owns <see cref="MatrixCellLab.RendezvousAddress"/> and
    /// <see cref="MatrixCellLab.SecondStunAddress"/>), TURN on <paramref name="turn"/> (which owns
    /// <see cref="MatrixCellLab.TurnAddress"/>) unless null.</summary>
    public static async Task<MatrixServices> StartAsync(INetwork rendezvous, INetwork? turn,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(rendezvous);
        var stun = await StunServer.StartAsync(rendezvous, new StunServerOptions
        {
            Primary = new IPEndPoint(MatrixCellLab.RendezvousAddress, MatrixCellLab.ServicePort),
            AlternateAddress = MatrixCellLab.SecondStunAddress,
            EnableTcp = false,
            RateLimitPerSecond = 0,
        }, cancellationToken: cancellationToken).ConfigureAwait(false);

        TurnServer? relay = null;
        if (turn is not null)
        {
            try
            {
                relay = await TurnServer.StartAsync(turn, TurnOptions(new IPEndPoint(MatrixCellLab.TurnAddress, MatrixCellLab.ServicePort)),
                    cancellationToken: cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                await stun.DisposeAsync().ConfigureAwait(false);
                throw;
            }
        }

        return new MatrixServices(stun, relay);
    }

    public async ValueTask DisposeAsync()
    {
        if (Turn is not null) await Turn.DisposeAsync().ConfigureAwait(false);
        await Stun.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>The TURN server's options in a matrix lab: one user, relays on its own address, and an allow list
    /// of <see cref="MatrixCellLab.TurnPeerAllow"/> (documentation ranges the default policy refuses).</summary>
    public static TurnServerOptions TurnOptions(IPEndPoint endpoint)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        return new TurnServerOptions
        {
            UdpListen = [endpoint],
            RelayAddress = endpoint.Address,
            Users = new Dictionary<string, string> { [MatrixCellLab.TurnUser] = MatrixCellLab.TurnPassword },
            Policy = new PeerPolicy(allow: MatrixCellLab.TurnPeerAllow.Select(PeerRule.Parse)),
            UnauthenticatedRequestsPerSecond = 0,
        };
    }
}
