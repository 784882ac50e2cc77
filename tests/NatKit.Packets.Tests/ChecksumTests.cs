using FsCheck;
using FsCheck.Fluent;

namespace NatKit.Packets.Tests;

public sealed class ChecksumTests
{
    /// <summary>The textbook word-by-word sum, independent of the 8-bytes-at-a-time implementation.</summary>
    internal static ushort NaiveChecksum(ReadOnlySpan<byte> data)
    {
        uint sum = 0;
        for (var i = 0; i < data.Length; i += 2)
        {
            var word = (uint)data[i] << 8 | (i + 1 < data.Length ? data[i + 1] : 0u);
            sum += word;
            sum = (sum & 0xFFFF) + (sum >> 16);
        }

        return (ushort)~sum;
    }

    [Fact]
    public void Rfc1071_Section3_Example_SumsTo_DDF2()
    {
        byte[] data = [0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7];
        Assert.Equal(0xDDF2u, Checksum.Add(0, data));
        Assert.Equal(0x220D, Checksum.Compute(data));
    }

    [Fact]
    public void OddLength_PadsTheLastByteAsHighOrder()
    {
        byte[] data = [0x12, 0x34, 0x56];
        Assert.Equal(unchecked((ushort)~(0x1234 + 0x5600)), Checksum.Compute(data));
    }

    [Fact]
    public void Empty_IsAllOnes() => Assert.Equal(0xFFFF, Checksum.Compute([]));

    [Fact]
    public void Compute_EqualsNaiveSum_ForEveryLengthAndOffset()
    {
        var data = new byte[200];
        new Random(7).NextBytes(data);
        for (var start = 0; start < 9; start++)
        {
            for (var length = 0; length + start <= data.Length; length++)
            {
                var slice = data.AsSpan(start, length);
                Assert.Equal(NaiveChecksum(slice), Checksum.Compute(slice));
            }
        }
    }

    [Fact]
    public void Compute_EqualsNaiveSum_OnRandomData() =>
        Check.One(Generators.Config, Prop.ForAll(Generators.Arb(Generators.Bytes(3000)),
            bytes => NaiveChecksum(bytes) == Checksum.Compute(bytes)));

    [Fact]
    public void Compute_AllOnesData_DoesNotOverflow()
    {
        foreach (var size in new[] { 70000, (16384 * 32 * 2) + 100 })
        {
            var data = new byte[size];
            data.AsSpan().Fill(0xFF);
            data[^1] = 0xFE;
            Assert.Equal(NaiveChecksum(data), Checksum.Compute(data));
        }
    }

    [Fact]
    public void IsValid_AcceptsDataWithItsChecksumInserted()
    {
        byte[] data = [0x45, 0x00, 0x00, 0x1C, 0x00, 0x00, 0x00, 0x00, 0x40, 0x11, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        var c = Checksum.Compute(data);
        data[10] = (byte)(c >> 8);
        data[11] = (byte)c;
        Assert.True(Checksum.IsValid(data));
        data[15] ^= 1;
        Assert.False(Checksum.IsValid(data));
    }

    [Fact]
    public void Rfc1624_Update16_EqualsRecomputation() =>
        Check.One(Generators.Config, Prop.ForAll(Generators.Arb(
            from data in Generators.Bytes(64)
            from pos in Gen.Choose(0, 31)
            from value in Generators.UInt16
            select (data, pos, value)), t =>
        {
            var (data, pos, value) = t;
            var buffer = new byte[Math.Max(data.Length, 64) & ~1];
            data.CopyTo(buffer, 0);
            var at = pos * 2;
            var before = Checksum.Compute(buffer);
            var old = (ushort)(buffer[at] << 8 | buffer[at + 1]);
            buffer[at] = (byte)(value >> 8);
            buffer[at + 1] = (byte)value;
            return Checksum.Update(before, old, value) == Checksum.Compute(buffer);
        }));

    [Fact]
    public void Rfc1624_Update32_EqualsRecomputation() =>
        Check.One(Generators.Config, Prop.ForAll(Generators.Arb(
            from data in Generators.Bytes(64)
            from pos in Gen.Choose(0, 14)
            from value in Generators.UInt32
            select (data, pos, value)), t =>
        {
            var (data, pos, value) = t;
            var buffer = new byte[64];
            data.CopyTo(buffer, 0);
            var at = pos * 2;
            var before = Checksum.Compute(buffer);
            var old = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(buffer.AsSpan(at));
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(at), value);
            return Checksum.Update(before, old, value) == Checksum.Compute(buffer);
        }));

    [Fact]
    public void Rfc1624_Section4_Example_AvoidsNegativeZero()
    {
        // RFC 1624 section 4: the other words sum to 0xCD7A and a word changes from 0x5555 to 0x3285. The old
        // checksum is ~(0xCD7A + 0x5555) = 0xDD2F; the new one must be 0x0000, not RFC 1141's 0xFFFF.
        const ushort oldChecksum = 0xDD2F;
        Assert.Equal(0x0000, Checksum.Update(oldChecksum, 0x5555, 0x3285));
    }

    [Fact]
    public void Rfc768_UpdateUdp_LeavesZeroChecksumAtZero()
    {
        Assert.Equal(0, Checksum.UpdateUdp(0, 0x1234, 0x4321));
        Assert.Equal(0, Checksum.UpdateUdp(0, 0x0A000001u, 0xC0000201u));
    }

    [Fact]
    public void Rfc768_UpdateUdp_SendsComputedZeroAsAllOnes()
    {
        // ~(~HC + ~m + m') is 0 when the sum is 0xFFFF; UDP must then carry 0xFFFF.
        Assert.Equal(0x0000, Checksum.Update(0x0001, 0xFFFF, 0x0001));
        Assert.Equal(0xFFFF, Checksum.UpdateUdp(0x0001, 0xFFFF, 0x0001));
        Assert.Equal(0x0000, Checksum.Update(0x0001, 0xFFFF0000u, 0x00000001u));
        Assert.Equal(0xFFFF, Checksum.UpdateUdp(0x0001, 0xFFFF0000u, 0x00000001u));
    }

    [Fact]
    public void PseudoHeader_Ipv4_MatchesBytesLaidOut()
    {
        var s = Ipv4Address.Parse("192.0.2.1");
        var d = Ipv4Address.Parse("198.51.100.7");
        byte[] bytes = [192, 0, 2, 1, 198, 51, 100, 7, 0, 17, 0x01, 0x2C];
        Assert.Equal(Checksum.Add(0, bytes), Checksum.Add(Checksum.PseudoHeader(s, d, IpProtocol.Udp, 300), ReadOnlySpan<byte>.Empty));
    }

    [Fact]
    public void PseudoHeader_Ipv6_MatchesBytesLaidOut()
    {
        var s = Ipv6Address.Parse("2001:db8::1");
        var d = Ipv6Address.Parse("2001:db8:ffff::ff02");
        var bytes = new byte[40];
        s.Write(bytes);
        d.Write(bytes.AsSpan(16));
        bytes[32] = 0x00; bytes[33] = 0x01; bytes[34] = 0x02; bytes[35] = 0x03;
        bytes[39] = 58;
        Assert.Equal(Checksum.Add(0, bytes), Checksum.Add(Checksum.PseudoHeader(s, d, IpProtocol.IcmpV6, 0x00010203), ReadOnlySpan<byte>.Empty));
    }

    [Fact]
    public void Update_Ipv6Address_EqualsRecomputation()
    {
        var s = Ipv6Address.Parse("2001:db8::1");
        var d = Ipv6Address.Parse("fe80::1234:5678:9abc:def0");
        var payload = new byte[] { 1, 2, 3, 4, 5 };
        var before = Checksum.Finish(Checksum.Add(Checksum.PseudoHeader(s, d, IpProtocol.Udp, 5), payload));
        var s2 = Ipv6Address.Parse("64:ff9b::c000:201");
        var after = Checksum.Finish(Checksum.Add(Checksum.PseudoHeader(s2, d, IpProtocol.Udp, 5), payload));
        Assert.Equal(after, Checksum.Update(before, s, s2));
    }
}
