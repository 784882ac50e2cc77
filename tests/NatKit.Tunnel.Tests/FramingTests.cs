using FsCheck;
using FsCheck.Fluent;
using NatKit.Packets;
using NatKit.Tunnel.Framing;

namespace NatKit.Tunnel.Tests;

/// <summary>The tunnel's messages: each one parses back to what was written, and nothing a peer sends throws.</summary>
public class FramingTests
{
    private static readonly Guid Session = Guid.Parse("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");

    [Fact]
    public void Hello_RoundTrips_AndKeepsItsTokenOutOfToString()
    {
        var hello = new TunnelHello(1, TunnelFeatures.Offloads, Session, Ipv4Address.Parse("10.1.1.2"), "s3cret-ü");
        var bytes = new byte[hello.Length];
        Assert.Equal(bytes.Length, hello.Write(bytes));
        Assert.Equal(TunnelMessageKind.Hello, TunnelMessage.Classify(bytes));
        Assert.True(TunnelHello.TryParse(bytes, out var back, out var error), error);
        Assert.Equal(hello, back);
        Assert.DoesNotContain("s3cret", hello.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Hello_WithTrailingBytesOrALyingTokenLength_IsRefusedWithASentence()
    {
        var hello = new TunnelHello(1, TunnelFeatures.None, Session, Ipv4Address.Any, "t");
        var bytes = new byte[hello.Length + 1];
        hello.Write(bytes);
        Assert.False(TunnelHello.TryParse(bytes, out _, out var error));
        Assert.Contains("token", error, StringComparison.Ordinal);
        Assert.False(TunnelHello.TryParse(bytes.AsSpan(0, hello.Length - 1), out _, out _));
    }

    [Fact]
    public void Welcome_RoundTrips_WithRoutes()
    {
        var welcome = new TunnelWelcome(1, TunnelFeatures.None, Ipv4Address.Parse("10.99.0.7"), 16,
            Ipv4Address.Parse("10.99.0.1"), 1400, 10, Session,
            [Ipv4Prefix.Parse("0.0.0.0/0"), Ipv4Prefix.Parse("203.0.113.0/24")]);
        var bytes = new byte[welcome.Length];
        welcome.Write(bytes);
        Assert.True(TunnelWelcome.TryParse(bytes, out var back, out var error), error);
        Assert.Equal(welcome.Address, back.Address);
        Assert.Equal("10.99.0.7/16", back.AddressWithPrefix);
        Assert.Equal(welcome.Routes, back.Routes);
        Assert.Equal((1400, 10, Session), (back.Mtu, back.KeepaliveSeconds, back.SessionId));
    }

    [Fact]
    public void Notice_RoundTrips_AndAPingIsAnsweredWithItsPayload()
    {
        var notice = new TunnelNotice(true, TunnelCode.Unauthorized, "wrong token");
        var bytes = new byte[TunnelNotice.MaxLength];
        var length = notice.Write(bytes);
        Assert.True(TunnelNotice.TryParse(bytes.AsSpan(0, length), out var back, out _));
        Assert.Equal(notice, back);

        Span<byte> ping = stackalloc byte[TunnelMessage.PingLength];
        TunnelMessage.WritePing(ping, 0xDEADBEEF, pong: true);
        Assert.Equal(TunnelMessageKind.Pong, TunnelMessage.Classify(ping));
        Assert.True(TunnelMessage.TryReadPing(ping, out var payload));
        Assert.Equal(0xDEADBEEFUL, payload);
    }

    [Theory]
    [InlineData(0x45, TunnelMessageKind.Ipv4Packet)]
    [InlineData(0x60, TunnelMessageKind.Ipv6Packet)]
    [InlineData(0x3F, TunnelMessageKind.Unknown)]
    [InlineData(0x00, TunnelMessageKind.Malformed)]
    [InlineData(0xFF, TunnelMessageKind.Malformed)]
    public void Classify_ReadsTheFirstByte(byte first, TunnelMessageKind kind) =>
        Assert.Equal(kind, TunnelMessage.Classify([first, 0, 0]));

    [Fact]
    public void RandomAndMutatedMessages_NeverThrow()
    {
        var hello = new TunnelHello(1, TunnelFeatures.Offloads, Session, Ipv4Address.Any, "token");
        var welcome = new TunnelWelcome(1, TunnelFeatures.None, Ipv4Address.Parse("10.99.0.7"), 16,
            Ipv4Address.Parse("10.99.0.1"), 1400, 10, Session, [Ipv4Prefix.Parse("0.0.0.0/0")]);
        var seeds = new List<byte[]> { new byte[hello.Length], new byte[welcome.Length] };
        hello.Write(seeds[0]);
        welcome.Write(seeds[1]);
        var gen = from seed in Gen.Elements(seeds.ToArray())
                  from flips in Gen.ListOf(Gen.Zip(Gen.Choose(0, 1000), ArbMap.Default.GeneratorFor<byte>()))
                  from cut in Gen.Choose(0, 80)
                  from random in Gen.ArrayOf(ArbMap.Default.GeneratorFor<byte>())
                  select (seed, flips, cut, random);
        Prop.ForAll(gen.ToArbitrary(), t =>
        {
            var bytes = (byte[])t.seed.Clone();
            foreach (var (pos, value) in t.flips)
            {
                bytes[pos % bytes.Length] = value;
            }

            foreach (var message in new[] { bytes, bytes[..Math.Min(t.cut, bytes.Length)], t.random })
            {
                _ = TunnelMessage.Classify(message);
                _ = TunnelHello.TryParse(message, out _, out _);
                _ = TunnelWelcome.TryParse(message, out _, out _);
                _ = TunnelNotice.TryParse(message, out _, out _);
                _ = TunnelMessage.TryReadPing(message, out _);
                _ = OffloadFrame.TryParse(message, out _);
            }

            return true;
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(1000));
    }
}
