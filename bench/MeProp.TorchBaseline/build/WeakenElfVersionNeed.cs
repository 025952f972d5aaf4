// Inline MSBuild task (RoslynCodeTaskFactory): marks one symbol-version need of an ELF64 little-endian
// shared library as weak, so that ld.so loads it even where that version is missing.
//
// ELF layout used (all little-endian, ELF64):
//   header:  e_shoff @0x28 (u64), e_shentsize @0x3A (u16), e_shnum @0x3C (u16)
//   section: sh_type @0x04 (u32), sh_offset @0x18 (u64), sh_size @0x20 (u64), sh_link @0x28 (u32),
//            sh_info @0x2C (u32) = number of Verneed records for SHT_GNU_verneed (0x6ffffffe)
//   Verneed: vn_version u16, vn_cnt u16, vn_file u32, vn_aux u32, vn_next u32
//   Vernaux: vna_hash u32, vna_flags u16 (@+4), vna_other u16, vna_name u32 (@+8), vna_next u32 (@+12)
// vna_flags |= VER_FLG_WEAK (0x2) on the entry whose name (in the linked string table) is VersionName.
using System;
using System.IO;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

public class WeakenElfVersionNeed : Task
{
    [Required] public ITaskItem[] Files { get; set; }
    [Required] public string VersionName { get; set; }

    const uint ShtGnuVerneed = 0x6ffffffe;
    const ushort VerFlagWeak = 0x2;

    public override bool Execute()
    {
        foreach (ITaskItem item in Files)
        {
            string path = item.GetMetadata("FullPath");
            try
            {
                string outcome = Patch(path, VersionName);
                Log.LogMessage(MessageImportance.High, "WeakenElfVersionNeed: " + path + ": " + outcome);
            }
            catch (Exception e)
            {
                // A warning, not an error: the program itself reports clearly that TorchSharp could not load.
                Log.LogWarning("WeakenElfVersionNeed: could not patch " + path + ": " + e.Message
                    + " (TorchSharp may fail to load where libstdc++ lacks " + VersionName + ")");
            }
        }
        return true;
    }

    static string Patch(string path, string versionName)
    {
        byte[] elf = File.ReadAllBytes(path);
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
            throw new InvalidDataException("not an ELF file");
        if (elf[4] != 2 || elf[5] != 1)
            throw new InvalidDataException("not ELF64 little-endian");

        long shoff = (long)U64(elf, 0x28);
        int shentsize = U16(elf, 0x3A);
        int shnum = U16(elf, 0x3C);
        if (shentsize < 64 || shoff <= 0 || shoff + (long)shentsize * shnum > elf.Length)
            throw new InvalidDataException("section header table out of range");

        for (int s = 0; s < shnum; s++)
        {
            long sh = shoff + (long)s * shentsize;
            if (U32(elf, sh + 0x04) != ShtGnuVerneed) continue;

            long offset = (long)U64(elf, sh + 0x18);
            long size = (long)U64(elf, sh + 0x20);
            uint link = U32(elf, sh + 0x28);
            uint count = U32(elf, sh + 0x2C);
            if (offset < 0 || size < 0 || offset + size > elf.Length || link >= shnum)
                throw new InvalidDataException(".gnu.version_r out of range");
            long strSh = shoff + (long)link * shentsize;
            long strOffset = (long)U64(elf, strSh + 0x18);
            long strSize = (long)U64(elf, strSh + 0x20);
            if (strOffset < 0 || strOffset + strSize > elf.Length)
                throw new InvalidDataException("version string table out of range");

            long need = offset;
            for (uint n = 0; n < count; n++)
            {
                CheckRange(need, 16, offset, size);
                int auxCount = U16(elf, need + 2);
                long aux = need + U32(elf, need + 8);
                for (int a = 0; a < auxCount; a++)
                {
                    CheckRange(aux, 16, offset, size);
                    string name = CString(elf, strOffset, strSize, U32(elf, aux + 8));
                    if (name == versionName)
                    {
                        ushort flags = U16(elf, aux + 4);
                        if ((flags & VerFlagWeak) != 0) return versionName + " already weak";
                        flags |= VerFlagWeak;
                        elf[aux + 4] = (byte)flags;
                        elf[aux + 5] = (byte)(flags >> 8);
                        WriteByRename(path, elf);
                        return versionName + " marked weak";
                    }
                    uint nextAux = U32(elf, aux + 12);
                    if (nextAux == 0) break;
                    aux += nextAux;
                }
                uint next = U32(elf, need + 12);
                if (next == 0) break;
                need += next;
            }
            return "no version need " + versionName + " (nothing to do)";
        }
        return "no .gnu.version_r section (nothing to do)";
    }

    // Write a new file and rename it over the old name: if the old name is a hard link into the NuGet
    // cache, the cache keeps its original bytes.
    static void WriteByRename(string path, byte[] bytes)
    {
        string temp = path + ".weaken-tmp";
        File.WriteAllBytes(temp, bytes);
        File.Delete(path);
        File.Move(temp, path);
    }

    static void CheckRange(long at, long length, long start, long size)
    {
        if (at < start || at + length > start + size)
            throw new InvalidDataException(".gnu.version_r record out of range");
    }

    static string CString(byte[] b, long tableOffset, long tableSize, uint index)
    {
        if (index >= tableSize) throw new InvalidDataException("version name out of range");
        long start = tableOffset + index;
        long end = start;
        while (end < tableOffset + tableSize && b[end] != 0) end++;
        return Encoding.ASCII.GetString(b, (int)start, (int)(end - start));
    }

    static ushort U16(byte[] b, long at) { return (ushort)(b[at] | b[at + 1] << 8); }
    static uint U32(byte[] b, long at) { return (uint)(U16(b, at) | (uint)U16(b, at + 2) << 16); }
    static ulong U64(byte[] b, long at) { return U32(b, at) | (ulong)U32(b, at + 4) << 32; }
}
