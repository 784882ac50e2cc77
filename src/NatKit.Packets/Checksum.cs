using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace NatKit.Packets;

/// <summary>
/// The Internet checksum: RFC 1071 one's-complement sum, pseudo-header sums (RFC 768/9293 for IPv4, RFC 8200
/// section 8.1 for IPv6) and RFC 1624 incremental updates.
/// </summary>
/// <remarks>
/// A "partial sum" is a <see cref="uint"/> holding an unfolded one's-complement sum of 16-bit words in network
/// order. Combine partial sums with <see cref="Add(uint, ReadOnlySpan{byte})"/>, then <see cref="Finish"/> turns
/// it into the checksum field value. Only the last span added may have an odd length.
/// </remarks>
public static class Checksum
{
    /// <summary>Adds the 16-bit words of <paramref name="data"/> (network order; an odd last byte is padded
    /// with zero) to <paramref name="partial"/>. Returns a folded partial sum (at most 0xFFFF).</summary>
    public static uint Add(uint partial, ReadOnlySpan<byte> data) => Fold(partial + (ulong)SumWords(data));

    /// <summary>Adds one 16-bit word to a partial sum.</summary>
    public static uint Add(uint partial, ushort word) => Fold((ulong)partial + word);

    /// <summary>Adds a 32-bit value as its two 16-bit words.</summary>
    public static uint Add(uint partial, uint value) => Fold((ulong)partial + (value >> 16) + (value & 0xFFFF));

    /// <summary>Folds a partial sum to 16 bits and complements it: the value to put in a checksum field.</summary>
    public static ushort Finish(uint partial) => (ushort)~Fold(partial);

    /// <summary>The RFC 1071 checksum of <paramref name="data"/> (the checksum field inside it must be zero).</summary>
    public static ushort Compute(ReadOnlySpan<byte> data) => Finish(Add(0, data));

    /// <summary>
    /// The checksum of <paramref name="data"/> plus <paramref name="partial"/> (a pseudo-header), treating the
    /// 2-byte checksum field at <paramref name="checksumOffset"/> (even) as zero whatever it holds.
    /// </summary>
    public static ushort ComputeSkipping(uint partial, ReadOnlySpan<byte> data, int checksumOffset) =>
        Finish(Add(Add(partial, data[..checksumOffset]), data[(checksumOffset + 2)..]));

    /// <summary>True when <paramref name="data"/>, checksum field included, sums to all ones.</summary>
    public static bool IsValid(ReadOnlySpan<byte> data) => Add(0, data) == 0xFFFF;

    /// <summary>Partial sum of the IPv4 pseudo-header: source, destination, zero, protocol, upper-layer length.</summary>
    public static uint PseudoHeader(Ipv4Address source, Ipv4Address destination, IpProtocol protocol, int length) =>
        Fold((ulong)source.HighWord + source.LowWord + destination.HighWord + destination.LowWord
             + (uint)protocol + (uint)length);

    /// <summary>Partial sum of the IPv6 pseudo-header (RFC 8200 section 8.1): source, destination, 32-bit
    /// upper-layer length, three zero bytes, next header.</summary>
    public static uint PseudoHeader(in Ipv6Address source, in Ipv6Address destination, IpProtocol nextHeader, int length) =>
        Fold(SumOf(source.High) + SumOf(source.Low) + SumOf(destination.High) + SumOf(destination.Low)
             + ((uint)length >> 16) + ((uint)length & 0xFFFF) + (uint)nextHeader);

    /// <summary>
    /// RFC 1624 equation 3: the checksum after one 16-bit word covered by it changes from
    /// <paramref name="oldWord"/> to <paramref name="newWord"/>: HC' = ~(~HC + ~m + m').
    /// </summary>
    public static ushort Update(ushort checksum, ushort oldWord, ushort newWord) =>
        (ushort)~Fold((ulong)(ushort)~checksum + (ushort)~oldWord + newWord);

    /// <summary>RFC 1624 equation 3 for a 32-bit field (e.g. an IPv4 address or a TCP sequence number).</summary>
    public static ushort Update(ushort checksum, uint oldValue, uint newValue) =>
        (ushort)~Fold((ulong)(ushort)~checksum
                      + (ushort)~(oldValue >> 16) + (ushort)~oldValue
                      + (newValue >> 16) + (newValue & 0xFFFF));

    /// <summary>RFC 1624 equation 3 for an IPv4 address change.</summary>
    public static ushort Update(ushort checksum, Ipv4Address oldAddress, Ipv4Address newAddress) =>
        Update(checksum, oldAddress.Value, newAddress.Value);

    /// <summary>RFC 1624 equation 3 for an IPv6 address change.</summary>
    public static ushort Update(ushort checksum, in Ipv6Address oldAddress, in Ipv6Address newAddress) =>
        (ushort)~Fold((ulong)(ushort)~checksum
                      + SumOf(~oldAddress.High) + SumOf(~oldAddress.Low)
                      + SumOf(newAddress.High) + SumOf(newAddress.Low));

    /// <summary>
    /// RFC 1624 equation 3 for the NAT's rewrite of an address (in the pseudo-header) and a port together, with one
    /// fold: HC' = ~(~HC + ~a + a' + ~p + p').
    /// </summary>
    public static ushort Update(ushort checksum, Ipv4Address oldAddress, Ipv4Address newAddress, ushort oldPort, ushort newPort) =>
        (ushort)~Fold((ulong)(ushort)~checksum
                      + (ushort)~oldAddress.HighWord + (ushort)~oldAddress.LowWord + newAddress.HighWord + newAddress.LowWord
                      + (ushort)~oldPort + newPort);

    /// <summary>
    /// <see cref="Update(ushort, Ipv4Address, Ipv4Address, ushort, ushort)"/> for an IPv4 UDP checksum: 0 stays 0
    /// and a 0 result is sent as 0xFFFF. Prefer this to chaining two updates: an intermediate 0 would read as "none".
    /// </summary>
    public static ushort UpdateUdp(ushort checksum, Ipv4Address oldAddress, Ipv4Address newAddress, ushort oldPort, ushort newPort) =>
        checksum == 0 ? (ushort)0 : NonZero(Update(checksum, oldAddress, newAddress, oldPort, newPort));

    /// <summary>
    /// <see cref="Update(ushort, ushort, ushort)"/> for an IPv4 UDP checksum: 0 means "no checksum" (RFC 768) and
    /// stays 0; a result of 0 is sent as 0xFFFF.
    /// </summary>
    public static ushort UpdateUdp(ushort checksum, ushort oldWord, ushort newWord) =>
        checksum == 0 ? (ushort)0 : NonZero(Update(checksum, oldWord, newWord));

    /// <summary><see cref="Update(ushort, uint, uint)"/> for an IPv4 UDP checksum (0 stays 0, 0 result is 0xFFFF).</summary>
    public static ushort UpdateUdp(ushort checksum, uint oldValue, uint newValue) =>
        checksum == 0 ? (ushort)0 : NonZero(Update(checksum, oldValue, newValue));

    /// <summary>A computed UDP checksum of 0 is transmitted as all ones (RFC 768, RFC 8200 section 8.1).</summary>
    internal static ushort NonZero(ushort checksum) => checksum == 0 ? (ushort)0xFFFF : checksum;

    private static ulong SumOf(ulong value) =>
        (value >> 48) + ((value >> 32) & 0xFFFF) + ((value >> 16) & 0xFFFF) + (value & 0xFFFF);

    private static uint Fold(ulong sum)
    {
        sum = (sum & 0xFFFFFFFF) + (sum >> 32);
        sum = (sum & 0xFFFFFFFF) + (sum >> 32);
        var s = (uint)sum;
        s = (s & 0xFFFF) + (s >> 16);
        s = (s & 0xFFFF) + (s >> 16);
        return s;
    }

    /// <summary>
    /// One's-complement sum of the 16-bit big-endian words of <paramref name="data"/>, folded to 16 bits. Sums in
    /// native order (32 bytes per step with 256-bit vectors, else 8 bytes per step into 64-bit accumulators), then
    /// swaps once (RFC 1071 section 2(B): the sum is byte-order independent).
    /// </summary>
    private static uint SumWords(ReadOnlySpan<byte> data)
    {
        ulong sum = 0;
        if (Vector256.IsHardwareAccelerated && data.Length >= 64)
        {
            sum = SumVector256(data, out var consumed);
            data = data[consumed..];
        }

        sum += SumScalar(data);
        var folded = Fold(sum);
        return BitConverter.IsLittleEndian ? BinaryPrimitives.ReverseEndianness((ushort)folded) : folded;
    }

    /// <summary>Each 32-bit lane gains at most 2 * 0xFFFF per vector, so lanes are flushed before they can overflow.</summary>
    private static ulong SumVector256(ReadOnlySpan<byte> data, out int consumed)
    {
        const int FlushEvery = 16384;
        var lanes = MemoryMarshal.Cast<byte, Vector256<uint>>(data);
        var mask = Vector256.Create(0xFFFFu);
        ulong total = 0;
        var i = 0;
        while (i < lanes.Length)
        {
            var a0 = Vector256<uint>.Zero;
            var a1 = Vector256<uint>.Zero;
            var end = Math.Min(lanes.Length, i + FlushEvery);
            for (; i + 1 < end; i += 2)
            {
                var v0 = lanes[i];
                var v1 = lanes[i + 1];
                a0 += (v0 & mask) + (v0 >> 16);
                a1 += (v1 & mask) + (v1 >> 16);
            }

            if (i < end)
            {
                var v = lanes[i++];
                a0 += (v & mask) + (v >> 16);
            }

            var (lo0, hi0) = Vector256.Widen(a0);
            var (lo1, hi1) = Vector256.Widen(a1);
            total += Vector256.Sum(lo0 + hi0 + lo1 + hi1);
        }

        consumed = lanes.Length * Vector256<byte>.Count;
        return total;
    }

    private static ulong SumScalar(ReadOnlySpan<byte> data)
    {
        ulong s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        var words = MemoryMarshal.Cast<byte, ulong>(data);
        var i = 0;
        for (; i + 4 <= words.Length; i += 4)
        {
            var a = words[i];
            var b = words[i + 1];
            var c = words[i + 2];
            var d = words[i + 3];
            s0 += (a & 0xFFFFFFFF) + (a >> 32);
            s1 += (b & 0xFFFFFFFF) + (b >> 32);
            s2 += (c & 0xFFFFFFFF) + (c >> 32);
            s3 += (d & 0xFFFFFFFF) + (d >> 32);
        }

        for (; i < words.Length; i++)
        {
            var a = words[i];
            s0 += (a & 0xFFFFFFFF) + (a >> 32);
        }

        var sum = s0 + s1 + s2 + s3;
        var tail = data[(words.Length * 8)..];
        if (tail.Length >= 4)
        {
            sum += MemoryMarshal.Read<uint>(tail);
            tail = tail[4..];
        }

        if (tail.Length >= 2)
        {
            sum += MemoryMarshal.Read<ushort>(tail);
            tail = tail[2..];
        }

        if (tail.Length == 1)
        {
            // The odd byte is the high-order byte of a zero-padded word: the first byte of a native word.
            sum += BitConverter.IsLittleEndian ? tail[0] : (uint)tail[0] << 8;
        }

        return sum;
    }
}
