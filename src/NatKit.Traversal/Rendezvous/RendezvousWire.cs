using System.Buffers.Binary;
using NatKit.Stun;
using NatKit.Traversal.Identity;

namespace NatKit.Traversal.Rendezvous;

/// <summary>Reading and writing the protocol's fixed-size attribute values on STUN's reader and writer.</summary>
internal static class RendezvousWire
{
    public static bool TryGetUInt64(this StunMessageReader msg, ushort type, out ulong value)
    {
        value = 0;
        if (!msg.TryGet(type, out var v) || v.Length != 8)
        {
            return false;
        }

        value = BinaryPrimitives.ReadUInt64BigEndian(v);
        return true;
    }

    public static bool TryGetNodeId(this StunMessageReader msg, ushort type, out NodeId id)
    {
        id = default;
        return msg.TryGet(type, out var v) && NodeId.TryRead(v, out id);
    }

    public static void AddUInt64(this ref StunMessageWriter w, ushort type, ulong value) =>
        BinaryPrimitives.WriteUInt64BigEndian(w.Reserve(type, 8), value);

    public static void AddNodeId(this ref StunMessageWriter w, ushort type, NodeId id) =>
        id.Write(w.Reserve(type, NodeId.Size));
}
