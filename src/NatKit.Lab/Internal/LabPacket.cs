namespace NatKit.Lab.Internal;

/// <summary>An IPv4 packet in flight: a pooled buffer, its length and where it is going next.</summary>
internal sealed class LabPacket
{
    public const int DefaultCapacity = 2048;

    public byte[] Buffer = new byte[DefaultCapacity];

    public int Length;

    /// <summary>The interface it is being delivered to (set while it waits in the event queue).</summary>
    public LabInterface? Target;

    public Span<byte> Span => Buffer.AsSpan(0, Length);

    public void EnsureCapacity(int length)
    {
        if (Buffer.Length < length)
        {
            Buffer = new byte[Math.Max(length, Buffer.Length * 2)];
        }
    }
}

/// <summary>Packets are reused: the lab is single-threaded, so a stack is the whole pool.</summary>
internal sealed class PacketPool
{
    private readonly Stack<LabPacket> _free = new();

    public int Outstanding { get; private set; }

    public LabPacket Rent(int length)
    {
        var p = _free.Count > 0 ? _free.Pop() : new LabPacket();
        p.EnsureCapacity(length);
        p.Length = length;
        p.Target = null;
        Outstanding++;
        return p;
    }

    public LabPacket Copy(ReadOnlySpan<byte> bytes)
    {
        var p = Rent(bytes.Length);
        bytes.CopyTo(p.Buffer);
        return p;
    }

    public void Return(LabPacket packet)
    {
        packet.Target = null;
        Outstanding--;
        _free.Push(packet);
    }
}
