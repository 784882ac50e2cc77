using NatKit.Lab.Internal;

namespace NatKit.Lab;

/// <summary>Something attached to segments: a host or a router.</summary>
public abstract class LabNode
{
    private protected LabNode(VirtualNetwork network, string name)
    {
        Network = network;
        Name = name;
    }

    /// <summary>The lab this node lives in.</summary>
    public VirtualNetwork Network { get; }

    /// <summary>Unique among the lab's hosts and routers.</summary>
    public string Name { get; }

    /// <summary>Takes ownership of a packet that arrived on <paramref name="iface"/>.</summary>
    internal abstract void Receive(LabInterface iface, LabPacket packet);

    public override string ToString() => Name;
}
