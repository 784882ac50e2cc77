namespace NatKit.Lab.Capture;

/// <summary>
/// A capture attached to a segment (every packet put on it, as sent) or to a host (every packet it sends or
/// receives). Dispose it to stop capturing and flush the file.
/// </summary>
public sealed class PacketCapture : IDisposable
{
    private readonly VirtualNetwork _network;
    private readonly PcapWriter _writer;
    private readonly List<PacketCapture> _owner;

    internal PacketCapture(VirtualNetwork network, string name, PcapWriter writer, List<PacketCapture> owner)
    {
        _network = network;
        Name = name;
        _writer = writer;
        _owner = owner;
        owner.Add(this);
    }

    /// <summary>What is captured: "segment home" or "host alice".</summary>
    public string Name { get; }

    /// <summary>Packets written so far.</summary>
    public long Packets => _writer.Packets;

    internal void Write(long ticks, ReadOnlySpan<byte> packet) =>
        _writer.Write(_network.Scheduler.Epoch + TimeSpan.FromTicks(ticks), packet);

    public void Dispose()
    {
        if (_owner.Remove(this))
        {
            _writer.Dispose();
        }
    }
}
