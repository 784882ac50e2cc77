using System.Net;
using System.Runtime.InteropServices;
using NatKit.Net.Internal;

namespace NatKit.Net;

/// <summary>
/// Slots for several datagrams at once, for <see cref="IBlockingDatagramSocket.ReceiveBatch"/> and
/// <see cref="IBlockingDatagramSocket.SendBatch"/>: each slot holds up to <see cref="SlotLength"/> bytes, a length
/// and an endpoint. The memory is native and fixed, so the kernel reads and writes it in place (one system call for
/// a whole batch on Linux) and nothing is pinned or allocated per datagram. One batch serves one thread at a time.
/// </summary>
public sealed unsafe class DatagramBatch : IDisposable
{
    private readonly IPEndPoint?[] _endPoints;
    private readonly int[] _lengths;
    private byte* _data;

    public DatagramBatch(int capacity, int slotLength)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(capacity, 1024);
        ArgumentOutOfRangeException.ThrowIfLessThan(slotLength, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(slotLength, 65_536);
        Capacity = capacity;
        SlotLength = slotLength;
        _endPoints = new IPEndPoint?[capacity];
        _lengths = new int[capacity];
        _data = (byte*)NativeMemory.AllocZeroed((nuint)capacity * (nuint)slotLength);
        Headers = new MessageHeaders(capacity, _data, slotLength);
    }

    public int Capacity { get; }

    public int SlotLength { get; }

    internal MessageHeaders Headers { get; }

    /// <summary>The whole of slot <paramref name="index"/>: write a datagram to send here.</summary>
    public Span<byte> Slot(int index)
    {
        ObjectDisposedException.ThrowIf(_data is null, this);
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Capacity);
        return new Span<byte>(_data + ((nint)index * SlotLength), SlotLength);
    }

    /// <summary>The datagram in slot <paramref name="index"/> (received, or set to be sent).</summary>
    public Span<byte> Datagram(int index) => Slot(index)[.._lengths[index]];

    /// <summary>Who sent the datagram in a slot, or where it is to go.</summary>
    public IPEndPoint RemoteEndPoint(int index) =>
        _endPoints[index] ?? throw new InvalidOperationException($"slot {index} holds no datagram");

    /// <summary>Marks slot <paramref name="index"/> as a datagram of <paramref name="length"/> bytes for/from
    /// <paramref name="remoteEndPoint"/>.</summary>
    public void Set(int index, int length, IPEndPoint remoteEndPoint)
    {
        ArgumentNullException.ThrowIfNull(remoteEndPoint);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, SlotLength);
        _ = Slot(index);
        _lengths[index] = length;
        _endPoints[index] = remoteEndPoint;
    }

    internal int LengthOf(int index) => _lengths[index];

    public void Dispose()
    {
        if (_data is null)
        {
            return;
        }

        Headers.Dispose();
        NativeMemory.Free(_data);
        _data = null;
    }
}
