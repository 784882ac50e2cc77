using System.Net;
using NatKit.Net;
using NatKit.Stun.Server;

namespace NatKit.Stun.Tests;

// The connection discipline the STUN and TURN servers share (caps per server and per source address, the
// handshake window, the idle timeout); the servers' own tests drive it over real connections.

public class TcpConnectionLimitsTests
{
    [Fact]
    public void Validate_NamesTheBadSetting_AsBothServersOptionsNameIt()
    {
        static string Fails(int total, int perAddress, double handshake, double idle) =>
            Assert.Throws<ArgumentException>(() => TcpConnectionLimits.Validate(total, perAddress,
                TimeSpan.FromMilliseconds(handshake), TimeSpan.FromMilliseconds(idle))).Message;

        TcpConnectionLimits.Validate(1024, 128, TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(30));
        Assert.Contains("MaxTcpConnections", Fails(0, 1, 1000, 1000), StringComparison.Ordinal);
        Assert.Contains("MaxTcpConnectionsPerAddress", Fails(10, 11, 1000, 1000), StringComparison.Ordinal);
        Assert.Contains("MaxTcpConnectionsPerAddress", Fails(10, 0, 1000, 1000), StringComparison.Ordinal);
        Assert.Contains("TcpHandshakeTimeout", Fails(10, 1, 0, 1000), StringComparison.Ordinal);
        Assert.Contains("TcpIdleTimeout", Fails(10, 1, 1000, -1000), StringComparison.Ordinal);

        // Longer than a system timer's longest due time: refused up front, not thrown by the first connection's
        // watchdog (the idle timeout from a timer callback, which would end the process).
        var longest = TcpConnectionLimits.MaxTimeout.TotalMilliseconds;
        TcpConnectionLimits.Validate(10, 1, TcpConnectionLimits.MaxTimeout, TcpConnectionLimits.MaxTimeout);
        Assert.Contains("TcpHandshakeTimeout", Fails(10, 1, longest + 1, 1000), StringComparison.Ordinal);
        Assert.Contains("TcpIdleTimeout", Fails(10, 1, 1000, longest + 1), StringComparison.Ordinal);
    }

    [Fact]
    public void Caps_TotalAndPerAddress_AndAMappedAddressIsTheSameHost()
    {
        var limits = new TcpConnectionLimits(total: 3, perAddress: 2);
        var a = IPAddress.Parse("192.0.2.1");
        Assert.Equal(TcpAdmission.Admitted, limits.TryAdmit(a));
        Assert.Equal(TcpAdmission.Admitted, limits.TryAdmit(a.MapToIPv6()));
        Assert.Equal(TcpAdmission.AddressLimit, limits.TryAdmit(a));
        Assert.Equal(TcpAdmission.Admitted, limits.TryAdmit(IPAddress.Parse("192.0.2.2")));
        Assert.Equal(TcpAdmission.TotalLimit, limits.TryAdmit(IPAddress.Parse("192.0.2.3")));
        limits.Release(a.MapToIPv6());
        Assert.Equal(2, limits.Count);
        Assert.Equal(TcpAdmission.Admitted, limits.TryAdmit(IPAddress.Parse("192.0.2.3")));
        limits.Release(IPAddress.Parse("198.51.100.9")); // never admitted: changes nothing
        Assert.Equal(3, limits.Count);
    }

    [Fact]
    public void Property_AnyAdmitReleaseSequence_MatchesAModel_AndNeverPassesTheCaps()
    {
        var prop = FsCheck.Fluent.Prop.ForAll<(byte Host, bool Admit)[]>(steps =>
        {
            var limits = new TcpConnectionLimits(total: 5, perAddress: 2);
            var held = new Dictionary<int, int>();
            foreach (var (host, admit) in steps)
            {
                var h = host % 4;
                var address = new IPAddress([10, 0, 0, (byte)h]);
                if (admit)
                {
                    var expected = held.Values.Sum() >= 5 ? TcpAdmission.TotalLimit
                        : held.GetValueOrDefault(h) >= 2 ? TcpAdmission.AddressLimit
                        : TcpAdmission.Admitted;
                    if (limits.TryAdmit(address) != expected)
                    {
                        return false;
                    }

                    if (expected == TcpAdmission.Admitted)
                    {
                        held[h] = held.GetValueOrDefault(h) + 1;
                    }
                }
                else if (held.GetValueOrDefault(h) > 0)
                {
                    limits.Release(address);
                    held[h]--;
                }

                if (limits.Count != held.Values.Sum())
                {
                    return false;
                }
            }

            return true;
        });
        FsCheck.Check.One(FsCheck.Config.QuickThrowOnFailure.WithMaxTest(300), prop);
    }
}

public class TcpConnectionWatchdogTests
{
    private static (ManualTimeProvider Time, TcpConnectionWatchdog Dog, List<TcpTimeout> Fired) Start()
    {
        var time = new ManualTimeProvider();
        var fired = new List<TcpTimeout>();
        var dog = new TcpConnectionWatchdog(time, TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(30), fired.Add,
            CancellationToken.None);
        return (time, dog, fired);
    }

    /// <summary>Not one tick before <paramref name="after"/> from now, and exactly then, for <paramref name="reason"/>.</summary>
    private static void AssertFiresAfter(ManualTimeProvider time, TcpConnectionWatchdog dog, List<TcpTimeout> fired,
        TimeSpan after, TcpTimeout reason)
    {
        time.Advance(after - TimeSpan.FromTicks(1));
        Assert.False(dog.Token.IsCancellationRequested);
        time.Advance(TimeSpan.FromTicks(1));
        Assert.True(dog.Token.IsCancellationRequested);
        Assert.Equal([reason], fired);
    }

    [Fact]
    public void Handshake_FiresAtTheWindow_NotBefore()
    {
        var (time, dog, fired) = Start();
        using var _ = dog;
        AssertFiresAfter(time, dog, fired, TimeSpan.FromSeconds(10), TcpTimeout.Handshake);
    }

    [Fact]
    public void LiveState_HoldsOff_ThenIdleRunsFromItsEnd()
    {
        var (time, dog, fired) = Start();
        using var _ = dog;
        dog.MessageReceived();
        dog.BeginLiveState();
        time.Advance(TimeSpan.FromHours(2));
        Assert.False(dog.Token.IsCancellationRequested);
        dog.EndLiveState();
        time.Advance(TimeSpan.FromSeconds(29));
        dog.MessageReceived(); // a message restarts the idle time
        AssertFiresAfter(time, dog, fired, TimeSpan.FromSeconds(30), TcpTimeout.Idle);
    }

    [Fact]
    public void Disposed_NeverFires()
    {
        var (time, dog, fired) = Start();
        dog.Dispose();
        time.Advance(TimeSpan.FromMinutes(5));
        dog.EndLiveState();
        dog.MessageReceived();
        Assert.Empty(fired);
    }
}
