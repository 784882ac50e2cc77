using FsCheck;
using FsCheck.Fluent;

namespace NatKit.Packets.Tests;

/// <summary>Random field values for the builders, shared by the property tests.</summary>
internal static class Generators
{
    public static readonly Config Config = Config.QuickThrowOnFailure.WithMaxTest(300);

    public static Gen<uint> UInt32 => Gen.Choose(0, 0xFFFF).SelectMany(hi => Gen.Choose(0, 0xFFFF), (hi, lo) => (uint)hi << 16 | (uint)lo);

    public static Gen<ushort> UInt16 => Gen.Choose(0, 0xFFFF).Select(v => (ushort)v);

    public static Gen<byte> Byte => Gen.Choose(0, 255).Select(v => (byte)v);

    public static Gen<bool> Bool => Gen.Elements(true, false);

    public static Gen<Ipv4Address> Address => UInt32.Select(v => new Ipv4Address(v));

    public static Gen<Ipv6Address> Address6 =>
        from a in UInt32
        from b in UInt32
        from c in UInt32
        from d in UInt32
        select new Ipv6Address((ulong)a << 32 | b, (ulong)c << 32 | d);

    public static Gen<byte[]> Bytes(int max) => Gen.Choose(0, max).SelectMany(n => Gen.ArrayOf(Byte, n));

    public static Gen<Ipv4Header> Ipv4 =>
        from s in Address
        from d in Address
        from ttl in Byte
        from id in UInt16
        from df in Bool
        from tos in Byte
        select new Ipv4Header(s, d, ttl, id, df, tos);

    public static Gen<TcpHeader> Tcp =>
        from sp in UInt16
        from dp in UInt16
        from seq in UInt32
        from ack in UInt32
        from flags in Gen.Choose(0, 0x1FF)
        from win in UInt16
        from urg in UInt16
        select new TcpHeader(sp, dp, seq, ack, (TcpFlags)flags, win, urg);

    /// <summary>TCP options: whole 4-byte words of NOPs and an MSS, or random bytes (views must not care).</summary>
    public static Gen<byte[]> TcpOptions => Gen.Choose(0, 10).SelectMany(words => Gen.ArrayOf(Byte, words * 4));

    public static Arbitrary<T> Arb<T>(Gen<T> gen) => FsCheck.Fluent.Arb.From(gen);
}
