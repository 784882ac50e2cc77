using System.Net;
using NatKit.Traversal.Ice;
using static NatKit.Traversal.Tests.Ice.IceTestKit;

namespace NatKit.Traversal.Tests.Ice;

/// <summary>Candidates from outside the agent added after the checks started (the hard-NAT methods' hook), and
/// the path report naming the method that found the path.</summary>
public class IceTrickleTests
{
    [Fact]
    public void ALocalCandidateOnANewSocket_AddedWhileChecking_IsChecked_AndTheReportNamesItsOrigin()
    {
        var wire = new IceWire();
        var a = Agent(IceRole.Controlling, 1);
        var b = Agent(IceRole.Controlled, 2);
        wire.Bind(a, 0, HostA);
        wire.Bind(b, 0, HostB);
        // A's first socket is blocked (a NAT that drops everything it sends): nothing works from it.
        wire.Drop = (source, _) => source.Equals(HostA);
        Assert.True(a.AddLocalCandidate(IceCandidate.Host(HostA), 0));
        Assert.True(b.AddLocalCandidate(IceCandidate.Host(HostB), 0));
        Exchange(a, b);
        wire.Run(wire.Now + TimeSpan.FromSeconds(1));
        Assert.Equal(IceAgentState.Checking, a.State);

        // A birthday set's socket (say) joins: a host candidate of its own origin on socket 1.
        var probe = Ep("10.0.0.1:1001");
        wire.Bind(a, 1, probe);
        var added = IceCandidate.Host(probe, origin: IceCandidateOrigin.BirthdayProbe);
        Assert.True(a.AddLocalCandidate(added, 1));
        wire.Run(wire.Now + TimeSpan.FromSeconds(10), () => BothConnected(a, b));

        Assert.True(BothConnected(a, b));
        Assert.Equal(1, a.SelectedPair!.Socket);
        var path = a.SelectedPath!;
        Assert.Equal(IceCandidateType.Host, path.LocalType);
        Assert.Equal(IceCandidateOrigin.BirthdayProbe, path.LocalOrigin);
        Assert.Equal(probe, path.LocalEndPoint);
        Assert.Equal(HostB, path.RemoteEndPoint);
        Assert.False(path.IsRelayed);
        Assert.Equal(TimeSpan.FromMilliseconds(20), path.Rtt);
        // From the first check (on the dead socket) to the selection: the second before the socket came, and a
        // round trip and a nomination after it.
        Assert.InRange(path.TimeToConnect, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1.2));
        Assert.Equal(path.TimeToConnect, path.TimeToSelected);
        Assert.Equal(a.Stats.ChecksStarted, path.ChecksStarted);
        // The peer never heard of that socket: it learned it from the check, as a peer-reflexive candidate.
        Assert.Equal(IceCandidateType.PeerReflexive, b.SelectedPath!.RemoteType);
        Assert.Equal(probe, b.SelectedPath.RemoteEndPoint);
    }

    [Fact]
    public void ARemoteCandidateAddedWhileChecking_IsChecked_AndKeepsTheOriginItWasAddedWith()
    {
        var wire = new IceWire();
        var a = Agent(IceRole.Controlling, 3);
        var b = Agent(IceRole.Controlled, 4);
        wire.Bind(a, 0, HostA);
        wire.Bind(b, 0, HostB);
        Assert.True(a.AddLocalCandidate(IceCandidate.Host(HostA), 0));
        Assert.True(b.AddLocalCandidate(IceCandidate.Host(HostB), 0));
        a.SetRemoteCredentials(b.LocalCredentials);
        b.SetRemoteCredentials(a.LocalCredentials);
        // A first aims at a port where nothing listens (a wrong guess); B waits for A's checks.
        var wrong = IceCandidate.ServerReflexive(Ep("10.0.0.2:1999"), HostB, null,
            origin: IceCandidateOrigin.PortPrediction);
        Assert.True(a.AddRemoteCandidate(wrong));
        wire.Run(wire.Now + TimeSpan.FromSeconds(1));
        Assert.Null(a.SelectedPath);

        // The next prediction is right: added while the first one is still being retransmitted. Guesses at one
        // address get foundations of their own so they are checked side by side, not frozen behind each other
        // (RFC 8445 section 6.1.2.6 would hold a second pair of the same foundation until the first one failed).
        var right = new IceCandidate(IceFoundation.Distinct(wrong.Foundation, 2), 1, IceProtocol.Udp, wrong.Priority,
            HostB, IceCandidateType.ServerReflexive, HostB) { Origin = IceCandidateOrigin.PortPrediction };
        Assert.True(a.AddRemoteCandidate(right));
        wire.Run(wire.Now + TimeSpan.FromSeconds(10), () => BothConnected(a, b));

        Assert.True(BothConnected(a, b));
        var path = a.SelectedPath!;
        Assert.Equal(IceCandidateType.ServerReflexive, path.RemoteType);
        Assert.Equal(IceCandidateOrigin.PortPrediction, path.RemoteOrigin);
        Assert.Equal(HostB, path.RemoteEndPoint);
        Assert.Equal(IceCandidateOrigin.Host, path.LocalOrigin);
        Assert.InRange(path.TimeToConnect, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1.2));
    }

    [Fact]
    public void NoSelectedPair_NoReport()
    {
        var a = Agent(IceRole.Controlling, 5);
        Assert.Null(a.SelectedPath);
        Assert.Null(a.ConnectedAt);
        Assert.False(a.IsPeer(0, HostB));
        Assert.True(a.AddLocalCandidate(IceCandidate.Host(HostA), 0));
        Assert.True(a.AddRemoteCandidate(IceCandidate.Host(HostB)));
        // Data is taken from any paired remote candidate on its socket, and only there.
        Assert.True(a.IsPeer(0, HostB));
        Assert.False(a.IsPeer(1, HostB));
        Assert.False(a.IsPeer(0, Ep("10.0.0.2:2001")));
    }
}
