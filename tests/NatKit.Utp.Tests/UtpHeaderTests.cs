using FsCheck;
using FsCheck.Fluent;

namespace NatKit.Utp.Tests;

public sealed class UtpHeaderTests
{
    [Fact]
    public void Bep29_Header_FieldsAreBigEndianAtTheirOffsets()
    {
        var packet = new byte[]
        {
            0x41, 0x00, 0x12, 0x34, // SYN v1, no extension, connection_id 0x1234
            0x01, 0x02, 0x03, 0x04, // timestamp_microseconds
            0x05, 0x06, 0x07, 0x08, // timestamp_difference_microseconds
            0x00, 0x10, 0x00, 0x00, // wnd_size 1 MiB
            0xAB, 0xCD, 0x00, 0x01, // seq_nr, ack_nr
            0xEE,                   // payload
        };

        Assert.True(UtpHeader.TryParse(packet, out var h));
        Assert.Equal(UtpPacketType.Syn, h.Type);
        Assert.Equal(1, h.Version);
        Assert.Equal(0x1234, h.ConnectionId);
        Assert.Equal(0x01020304u, h.TimestampMicroseconds);
        Assert.Equal(0x05060708u, h.TimestampDifferenceMicroseconds);
        Assert.Equal(1u << 20, h.WindowSize);
        Assert.Equal(0xABCD, h.SequenceNumber);
        Assert.Equal(1, h.AckNumber);
        Assert.Equal(new byte[] { 0xEE }, h.Payload.ToArray());
        Assert.True(h.SelectiveAck.IsEmpty);
    }

    [Theory]
    [InlineData(UtpPacketType.Data, 0x01)]
    [InlineData(UtpPacketType.Fin, 0x11)]
    [InlineData(UtpPacketType.State, 0x21)]
    [InlineData(UtpPacketType.Reset, 0x31)]
    [InlineData(UtpPacketType.Syn, 0x41)]
    public void Bep29_TypeAndVersion_ShareTheFirstByte(UtpPacketType type, byte first)
    {
        var packet = new byte[UtpHeader.Size];
        UtpHeader.Write(packet, type, 0, 7, 0, 0, 0, 0, 0);
        Assert.Equal(first, packet[0]);
    }

    [Theory]
    [InlineData(0x02)] // version 2
    [InlineData(0x00)] // version 0
    [InlineData(0x51)] // type 5
    [InlineData(0xF1)] // type 15
    public void TryParse_RejectsUnknownVersionOrType(byte first)
    {
        var packet = new byte[UtpHeader.Size];
        packet[0] = first;
        Assert.False(UtpHeader.TryParse(packet, out _));
    }

    [Fact]
    public void TryParse_RejectsShortPackets()
    {
        var packet = new byte[UtpHeader.Size];
        UtpHeader.Write(packet, UtpPacketType.State, 0, 1, 2, 3, 4, 5, 6);
        for (var n = 0; n < UtpHeader.Size; n++)
        {
            Assert.False(UtpHeader.TryParse(packet.AsSpan(0, n), out _));
        }

        Assert.True(UtpHeader.TryParse(packet, out _));
    }

    [Fact]
    public void Bep29_SelectiveAck_IsParsedAndPayloadFollowsTheExtensionChain()
    {
        var packet = new byte[UtpHeader.Size + 2 + 8 + 2 + 3 + 2];
        UtpHeader.Write(packet, UtpPacketType.State, UtpHeader.SelectiveAckExtension, 1, 0, 0, 0, 10, 20);
        var n = UtpHeader.Size;
        n += UtpHeader.WriteSelectiveAck(packet.AsSpan(n), 9, [0x01, 0, 0, 0, 0, 0, 0, 0x80]);
        packet[n] = 0; // an unknown extension type 9 of 3 bytes, last in the chain
        packet[n + 1] = 3;
        n += 5;
        packet[n] = 0xAA;
        packet[n + 1] = 0xBB;

        Assert.True(UtpHeader.TryParse(packet, out var h));
        Assert.Equal(new byte[] { 0x01, 0, 0, 0, 0, 0, 0, 0x80 }, h.SelectiveAck.ToArray());
        Assert.Equal(new byte[] { 0xAA, 0xBB }, h.Payload.ToArray());
    }

    [Theory]
    [InlineData(0)]
    [InlineData(3)]
    [InlineData(5)]
    [InlineData(6)]
    public void Bep29_SelectiveAck_LengthMustBeAPositiveMultipleOf4(byte length)
    {
        var packet = new byte[UtpHeader.Size + 2 + length];
        UtpHeader.Write(packet, UtpPacketType.State, UtpHeader.SelectiveAckExtension, 1, 0, 0, 0, 10, 20);
        packet[UtpHeader.Size] = 0;
        packet[UtpHeader.Size + 1] = length;
        Assert.False(UtpHeader.TryParse(packet, out _));
    }

    [Fact]
    public void TryParse_RejectsAnExtensionThatRunsPastTheEnd()
    {
        var packet = new byte[UtpHeader.Size + 2 + 4];
        UtpHeader.Write(packet, UtpPacketType.State, UtpHeader.SelectiveAckExtension, 1, 0, 0, 0, 10, 20);
        packet[UtpHeader.Size] = 0;
        packet[UtpHeader.Size + 1] = 8; // claims 8, has 4
        Assert.False(UtpHeader.TryParse(packet, out _));

        packet[UtpHeader.Size + 1] = 4;
        packet[UtpHeader.Size] = 1; // chain continues but nothing follows
        Assert.False(UtpHeader.TryParse(packet, out _));
    }

    [Fact]
    public void Property_WriteThenParse_ReturnsTheFields()
    {
        var prop = Prop.ForAll(
            Gen.Elements(UtpPacketType.Data, UtpPacketType.Fin, UtpPacketType.State, UtpPacketType.Reset,
                UtpPacketType.Syn).ToArbitrary(),
            ArbMap.Default.ArbFor<(ushort, uint, uint, uint, ushort, ushort)>(),
            ArbMap.Default.ArbFor<byte[]>(),
            (type, f, payload) =>
            {
                var (id, ts, diff, wnd, seq, ack) = f;
                var packet = new byte[UtpHeader.Size + payload.Length];
                UtpHeader.Write(packet, type, 0, id, ts, diff, wnd, seq, ack);
                payload.CopyTo(packet, UtpHeader.Size);
                return UtpHeader.TryParse(packet, out var h) && h.Type == type && h.ConnectionId == id &&
                       h.TimestampMicroseconds == ts && h.TimestampDifferenceMicroseconds == diff &&
                       h.WindowSize == wnd && h.SequenceNumber == seq && h.AckNumber == ack &&
                       h.Payload.SequenceEqual(payload);
            });
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(500), prop);
    }

    [Fact]
    public void Fuzz_RandomAndMutatedBytes_NeverThrow_AndParsedViewsStayInBounds()
    {
        var valid = new byte[UtpHeader.Size + 2 + 4 + 10];
        UtpHeader.Write(valid, UtpPacketType.State, UtpHeader.SelectiveAckExtension, 1, 2, 3, 4, 5, 6);
        UtpHeader.WriteSelectiveAck(valid.AsSpan(UtpHeader.Size), 0, [1, 2, 3, 4]);

        var prop = Prop.ForAll(
            ArbMap.Default.ArbFor<byte[]>(),
            ArbMap.Default.ArbFor<(int, byte)[]>(),
            (random, mutations) =>
            {
                ParseEverything(random);
                var mutated = (byte[])valid.Clone();
                foreach (var (at, value) in mutations)
                {
                    mutated[(int)((uint)at % mutated.Length)] = value;
                }

                ParseEverything(mutated);
                ParseEverything(mutated.AsSpan(0, (int)((uint)mutations.Length % (mutated.Length + 1))));
                return true;
            });
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(2000), prop);
    }

    private static void ParseEverything(ReadOnlySpan<byte> bytes)
    {
        if (UtpHeader.TryParse(bytes, out var h))
        {
            _ = h.Type;
            _ = h.ConnectionId;
            _ = h.AckNumber;
            Assert.True(h.PayloadOffset <= bytes.Length);
            Assert.True(h.SelectiveAck.Length % 4 == 0);
            _ = h.Payload.Length;
        }
    }
}
