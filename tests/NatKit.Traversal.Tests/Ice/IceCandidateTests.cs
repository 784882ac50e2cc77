using System.Net;
using FsCheck;
using FsCheck.Fluent;
using NatKit.Traversal.Ice;
using static NatKit.Traversal.Tests.Ice.IceTestKit;

namespace NatKit.Traversal.Tests.Ice;

/// <summary>Priorities and foundations (RFC 8445 section 5.1.2, 5.1.1.3) and the SDP candidate line (RFC 8839
/// section 5.1): libnice's own lines, errors in one sentence, round trips, and garbage that never throws.</summary>
public class IceCandidateTests
{
    [Theory]
    [InlineData(IceCandidateType.Host, 126)]
    [InlineData(IceCandidateType.PeerReflexive, 110)]
    [InlineData(IceCandidateType.ServerReflexive, 100)]
    [InlineData(IceCandidateType.Relayed, 0)]
    public void Rfc8445_5_1_2_Priority_IsTypeTimes2To24_PlusLocalTimes2To8_Plus256MinusComponent(IceCandidateType type, int typePreference)
    {
        Assert.Equal(typePreference, IcePriority.TypePreference(type));
        Assert.Equal((uint)((typePreference << 24) + (65535 << 8) + 255), IcePriority.Candidate((byte)typePreference, 65535, 1));
        Assert.Equal((uint)((typePreference << 24) + (300 << 8) + 254), IcePriority.Candidate((byte)typePreference, 300, 2));
    }

    [Fact]
    public void Priority_ExtensionOrigins_RankBetweenTheRfcTypes()
    {
        Assert.InRange(IcePriority.TypePreference(IceCandidateType.ServerReflexive, IceCandidateOrigin.PortMapped),
            IcePriority.ServerReflexivePreference + 1, IcePriority.PeerReflexivePreference - 1);
        Assert.InRange(IcePriority.TypePreference(IceCandidateType.ServerReflexive, IceCandidateOrigin.BirthdayProbe),
            IcePriority.RelayedPreference + 1, IcePriority.ServerReflexivePreference - 1);
        Assert.Equal(IcePriority.PortMappedPreference,
            IceCandidate.ServerReflexive(Ep("203.0.113.1:1"), HostA, null, origin: IceCandidateOrigin.PortMapped).Priority >> 24);
    }

    [Fact]
    public void Rfc8445_6_1_2_3_PairPriority_MatchesTheFormula_AndDependsOnWhichSideControls()
    {
        Prop.ForAll(ArbMap.Default.ArbFor<uint>(), ArbMap.Default.ArbFor<uint>(), (g, d) =>
        {
            var expected = (System.Numerics.BigInteger.Pow(2, 32) * Math.Min(g, d)) + (2 * (System.Numerics.BigInteger)Math.Max(g, d)) + (g > d ? 1 : 0);
            return IcePriority.Pair(g, d) == expected;
        }).QuickCheckThrowOnFailure();
        // Same two candidates: the controlling side's candidate wins the tie-break bit.
        Assert.Equal(IcePriority.Pair(10, 5), IcePriority.Pair(5, 10) + 1);
    }

    [Fact]
    public void Rfc8445_5_1_1_3_Foundations_SameTypeBaseServerTransport_Share_AnyDifferenceSplits()
    {
        var ip = IPAddress.Parse("10.0.0.1");
        var server = IPAddress.Parse("203.0.113.100");
        var f = IceFoundation.Compute(IceCandidateType.ServerReflexive, ip, server, IceProtocol.Udp);
        Assert.Equal(f, IceFoundation.Compute(IceCandidateType.ServerReflexive, ip, server, IceProtocol.Udp));
        Assert.NotEqual(f, IceFoundation.Compute(IceCandidateType.Host, ip, server, IceProtocol.Udp));
        Assert.NotEqual(f, IceFoundation.Compute(IceCandidateType.ServerReflexive, IPAddress.Parse("10.0.0.2"), server, IceProtocol.Udp));
        Assert.NotEqual(f, IceFoundation.Compute(IceCandidateType.ServerReflexive, ip, IPAddress.Parse("203.0.113.101"), IceProtocol.Udp));
        Assert.NotEqual(f, IceFoundation.Compute(IceCandidateType.ServerReflexive, ip, server, IceProtocol.Tcp));
        Assert.True(IceCandidateSdp.IsIceChars(f) && f.Length <= 32);
        var d = IceFoundation.Distinct(new string('a', 32), 1234);
        Assert.True(d.Length <= 32 && IceCandidateSdp.IsIceChars(d));
        Assert.NotEqual(d, IceFoundation.Distinct(new string('a', 32), 1235));
    }

    [Theory]
    // Lines as libnice 0.1.21 prints them (nice_agent_generate_local_candidate_sdp).
    [InlineData("a=candidate:1 1 UDP 2013266431 127.0.0.1 45678 typ host", IceCandidateType.Host, "127.0.0.1:45678", null)]
    [InlineData("candidate:2 1 UDP 1677721855 203.0.113.7 3478 typ srflx raddr 192.168.1.10 rport 45678", IceCandidateType.ServerReflexive, "203.0.113.7:3478", "192.168.1.10:45678")]
    [InlineData("candidate:3 1 udp 16777215 198.51.100.9 4000 typ relay raddr 203.0.113.7 rport 3478 generation 0 network-id 1", IceCandidateType.Relayed, "198.51.100.9:4000", "203.0.113.7:3478")]
    [InlineData("candidate:abc+/ 1 UDP 1 fd00::1 9 typ prflx", IceCandidateType.PeerReflexive, "[fd00::1]:9", null)]
    public void Sdp_ParsesCandidateLines(string line, IceCandidateType type, string endPoint, string? related)
    {
        Assert.True(IceCandidateSdp.TryParse(line, out var c, out var error), error);
        Assert.Equal(type, c.Type);
        Assert.Equal(IPEndPoint.Parse(endPoint), c.EndPoint);
        Assert.Equal(related is null ? null : IPEndPoint.Parse(related), c.RelatedEndPoint);
        Assert.Equal(1, c.Component);
        Assert.Equal(IceProtocol.Udp, c.Protocol);
        Assert.True(IceCandidateSdp.TryParse(IceCandidateSdp.Format(c), out var again, out _));
        Assert.Equal(c, again);
    }

    [Fact]
    public void Sdp_FormatsTheCanonicalForm()
    {
        var c = IceCandidate.ServerReflexive(Ep("203.0.113.7:3478"), Ep("192.168.1.10:45678"), null);
        Assert.Equal($"candidate:{c.Foundation} 1 UDP {c.Priority} 203.0.113.7 3478 typ srflx raddr 192.168.1.10 rport 45678",
            IceCandidateSdp.Format(c));
    }

    [Theory]
    [InlineData("", "empty")]
    [InlineData("a=ice-ufrag:abcd", "starts with")]
    [InlineData("candidate:1 1 UDP 1 127.0.0.1 5 typ", "at least 8 fields")]
    [InlineData("candidate:f!o 1 UDP 1 127.0.0.1 5 typ host", "foundation")]
    [InlineData("candidate:1 0 UDP 1 127.0.0.1 5 typ host", "component")]
    [InlineData("candidate:1 257 UDP 1 127.0.0.1 5 typ host", "component")]
    [InlineData("candidate:1 1 SCTP 1 127.0.0.1 5 typ host", "transport")]
    [InlineData("candidate:1 1 UDP -1 127.0.0.1 5 typ host", "priority")]
    [InlineData("candidate:1 1 UDP 4294967296 127.0.0.1 5 typ host", "priority")]
    [InlineData("candidate:1 1 UDP 1 127.0.0.1 65536 typ host", "port")]
    [InlineData("candidate:1 1 UDP 1 1 5 typ host", "not an IP address")]
    [InlineData("candidate:1 1 UDP 1 abcd-1234.local 5 typ host", "mDNS")]
    [InlineData("candidate:1 1 UDP 1 127.0.0.1 5 type host", "\"typ\"")]
    [InlineData("candidate:1 1 UDP 1 127.0.0.1 5 typ stun", "candidate type")]
    [InlineData("candidate:1 1 UDP 1 127.0.0.1 5 typ srflx raddr 10.0.0.1", "rport")]
    [InlineData("candidate:1 1 UDP 1 127.0.0.1 5 typ srflx raddr 10.0.0.1 rport x", "related address")]
    [InlineData("candidate:1 1 UDP 1 127.0.0.1 5 typ host generation", "name-value pairs")]
    [InlineData("candidate:1 1 UDP 1 127.0.0.1 5 typ host generation 0 rport 5", "come right after")]
    public void Sdp_BadLines_AreRefusedWithOneSentence(string line, string why)
    {
        Assert.False(IceCandidateSdp.TryParse(line, out _, out var error));
        Assert.Contains(why, error, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', error);
    }

    private static readonly Gen<IceCandidate> CandidateGen =
        from v6 in ArbMap.Default.GeneratorFor<bool>()
        from bytes in Gen.ArrayOf(ArbMap.Default.GeneratorFor<byte>(), 16)
        from port in Gen.Choose(0, 65535)
        from type in Gen.Elements(Enum.GetValues<IceCandidateType>())
        from component in Gen.Choose(1, 256)
        from priority in ArbMap.Default.GeneratorFor<uint>()
        from tcp in ArbMap.Default.GeneratorFor<bool>()
        from foundationLength in Gen.Choose(1, 32)
        from foundation in Gen.ArrayOf(Gen.Elements("ABCxyz019+/".ToCharArray()), foundationLength)
        from related in ArbMap.Default.GeneratorFor<bool>()
        from extensions in Gen.ListOf(Gen.Elements("generation", "network-id", "ufrag", "tcptype"))
        select new IceCandidate(new string(foundation), component, tcp ? IceProtocol.Tcp : IceProtocol.Udp, priority,
            new IPEndPoint(v6 ? new IPAddress(bytes) : new IPAddress(bytes[..4]), port), type,
            related ? new IPEndPoint(new IPAddress(bytes[4..8]), 65535 - port) : null)
        {
            Extensions = extensions.Take(4).Select((n, i) => new IceCandidateExtension(n, i.ToString(System.Globalization.CultureInfo.InvariantCulture))).ToList(),
        };

    [Fact]
    public void Sdp_ParseOfFormat_GivesTheCandidateBack()
    {
        Prop.ForAll(CandidateGen.ToArbitrary(), c =>
        {
            c = c.EndPoint.Address.IsIPv4MappedToIPv6 ? IceCandidate.Host(HostA) : c;
            Assert.True(IceCandidateSdp.TryParse(IceCandidateSdp.Format(c), out var back, out var error), error);
            Assert.Equal(c, back);
            return true;
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(1000));
    }

    [Fact]
    public void Sdp_GarbageAndMutatedLines_NeverThrow()
    {
        var gen = from c in CandidateGen
                  from edits in Gen.ListOf(Gen.Zip(Gen.Choose(0, 400), Gen.Elements(" :.x0-\u00e9\0%[]".ToCharArray())))
                  from cut in Gen.Choose(0, 40)
                  select (IceCandidateSdp.Format(c), edits, cut);
        Prop.ForAll(gen.ToArbitrary(), t =>
        {
            var chars = t.Item1.ToCharArray();
            foreach (var (pos, ch) in t.edits)
            {
                chars[pos % chars.Length] = ch;
            }

            var line = new string(chars);
            IceCandidateSdp.TryParse(line, out _, out _);
            IceCandidateSdp.TryParse(line[..Math.Max(0, line.Length - t.cut)], out _, out _);
            return true;
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(2000));
        Prop.ForAll(ArbMap.Default.ArbFor<string>(), s =>
        {
            IceCandidateSdp.TryParse(s, out _, out _);
            IceCandidateSdp.TryParse("candidate:" + s, out _, out _);
            return true;
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(2000));
        Assert.False(IceCandidateSdp.TryParse(new string('1', 5000), out _, out var error));
        Assert.Contains("longer", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Credentials_AreValidatedAndGeneratedWithEnoughRandomness()
    {
        var c = IceCredentials.Generate();
        Assert.True(IceCredentials.IsValidUfrag(c.Ufrag) && IceCredentials.IsValidPassword(c.Password));
        Assert.True(c.Ufrag.Length * 6 >= 24 && c.Password.Length * 6 >= 128);
        Assert.NotEqual(c, IceCredentials.Generate());
        Assert.DoesNotContain(c.Password, c.ToString(), StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => new IceCredentials("abc", new string('p', 22)));
        Assert.Throws<ArgumentException>(() => new IceCredentials("abcd", new string('p', 21)));
        Assert.Throws<ArgumentException>(() => new IceCredentials("ab:d", new string('p', 22)));
    }
}
