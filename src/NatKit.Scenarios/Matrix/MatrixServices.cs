using System.Net;
using NatKit.Stun.Server;
using NatKit.Turn.Policy;
using NatKit.Turn.Server;

namespace NatKit.Scenarios.Matrix;

/// <summary>
/// The servers of a cell's internet, started inside its lab (call from <c>lab.Run</c>): STUN on both rendezvous
/// addresses (RFC 5780 mode, so a peer can profile its NAT's port allocation against two addresses), and NatKit's
/// TURN server when the cell has a relay, allowing the lab's public addresses as peers. They are left running when
/// the scenario ends: the lab is thrown away with them.
/// </summary>
public sealed record MatrixServices(StunServer Stun, TurnServer? Turn)
{
    public static async Task<MatrixServices> StartAsync(MatrixCellLab cell, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(cell);
        var stun = await StunServer.StartAsync(cell.RendezvousHost, new StunServerOptions
        {
            Primary = cell.Rendezvous,
            AlternateAddress = MatrixCellLab.SecondStunAddress,
            EnableTcp = false,
            RateLimitPerSecond = 0,
        }, cancellationToken: cancellationToken).ConfigureAwait(false);

        TurnServer? turn = null;
        if (cell.TurnHost is { } host && cell.Turn is { } endpoint)
        {
            turn = await TurnServer.StartAsync(host, TurnOptions(endpoint), cancellationToken: cancellationToken)
                .ConfigureAwait(false);
        }

        return new MatrixServices(stun, turn);
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
