//! Checks a module's imports and exports its mutable globals, so the state
//! hash covers them (as Wizer does for snapshots). Only the export section
//! changes; every other section is copied byte for byte, so the code that
//! runs is the code that was given. Both replicas instrument identically.

use understudy_wire::codec::{put_str, put_varint, Reader};
use wasmtime::wasmparser::{BinaryReader, GlobalSectionReader, ImportSectionReader, TypeRef};

use crate::abi::MODULE;
use crate::error::HypervisorError;

const MAGIC: &[u8; 4] = b"\0asm";
const SECTION_IMPORT: u8 = 2;
const SECTION_GLOBAL: u8 = 6;
const SECTION_EXPORT: u8 = 7;
/// Sections that come after the export section in a module.
const AFTER_EXPORT: [u8; 5] = [8, 9, 10, 11, 12];
const EXPORT_GLOBAL: u8 = 3;

/// A module ready to compile.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub bytes: Vec<u8>,
    /// Export names of the module's mutable globals, in index order.
    pub globals: Vec<String>,
}

fn malformed(detail: impl std::fmt::Display) -> HypervisorError {
    HypervisorError::MalformedModule(detail.to_string())
}

struct Section<'a> {
    id: u8,
    offset: usize,
    contents: &'a [u8],
}

fn sections(bytes: &[u8]) -> Result<Vec<Section<'_>>, HypervisorError> {
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(malformed("not a WebAssembly binary (bad magic number)"));
    }
    if bytes[4..8] != [1, 0, 0, 0] {
        return Err(malformed(format!("unsupported binary version {:02x?} (components are not supported)", &bytes[4..8])));
    }
    let mut r = Reader::new(&bytes[8..], "module");
    let mut out = Vec::new();
    while !r.is_empty() {
        let id = r.u8().map_err(malformed)?;
        let contents = r.bytes().map_err(malformed)?;
        out.push(Section { id, offset: 8 + r.position() - contents.len(), contents });
    }
    Ok(out)
}

/// Every import must be a preview1 function (so no global is imported and
/// the module's own globals start at index 0).
fn check_imports(s: &Section<'_>) -> Result<(), HypervisorError> {
    let reader = ImportSectionReader::new(BinaryReader::new(s.contents, s.offset)).map_err(malformed)?;
    for imp in reader.into_imports() {
        let imp = imp.map_err(malformed)?;
        let kind = match imp.ty {
            TypeRef::Func(_) | TypeRef::FuncExact(_) => "function",
            TypeRef::Table(_) => "table",
            TypeRef::Memory(_) => "memory",
            TypeRef::Global(_) => "global",
            TypeRef::Tag(_) => "tag",
        };
        if imp.module != MODULE || kind != "function" {
            return Err(HypervisorError::UnsupportedImport { module: imp.module.into(), name: imp.name.into(), kind });
        }
    }
    Ok(())
}

fn mutable_globals(s: &Section<'_>, first: u32) -> Result<Vec<u32>, HypervisorError> {
    let reader = GlobalSectionReader::new(BinaryReader::new(s.contents, s.offset)).map_err(malformed)?;
    let mut out = Vec::new();
    for (i, g) in reader.into_iter().enumerate() {
        if g.map_err(malformed)?.ty.mutable {
            out.push(first + i as u32);
        }
    }
    Ok(out)
}

fn export_section(old: Option<&[u8]>, globals: &[u32], names: &[String]) -> Result<Vec<u8>, HypervisorError> {
    let (count, rest) = match old {
        Some(c) => {
            let mut r = Reader::new(c, "export section");
            let n = r.varint().map_err(malformed)?;
            (n, r.rest())
        }
        None => (0, &[][..]),
    };
    let mut out = Vec::new();
    put_varint(&mut out, count + globals.len() as u64);
    out.extend_from_slice(rest);
    for (idx, name) in globals.iter().zip(names) {
        put_str(&mut out, name);
        out.push(EXPORT_GLOBAL);
        put_varint(&mut out, u64::from(*idx));
    }
    Ok(out)
}

fn push_section(out: &mut Vec<u8>, id: u8, contents: &[u8]) {
    out.push(id);
    put_varint(out, contents.len() as u64);
    out.extend_from_slice(contents);
}

/// Validates the framing and the imports of `bytes`, and exports every
/// mutable global. Full validation is wasmtime's, at compile time.
pub fn prepare(bytes: &[u8]) -> Result<Prepared, HypervisorError> {
    let secs = sections(bytes)?;
    let mut globals = Vec::new();
    for s in &secs {
        match s.id {
            SECTION_IMPORT => check_imports(s)?,
            SECTION_GLOBAL => globals = mutable_globals(s, 0)?,
            _ => {}
        }
    }
    let names: Vec<String> = globals.iter().map(|i| format!("__understudy_global_{i}")).collect();
    if globals.is_empty() {
        return Ok(Prepared { bytes: bytes.to_vec(), globals: names });
    }
    let old = secs.iter().find(|s| s.id == SECTION_EXPORT).map(|s| s.contents);
    let exports = export_section(old, &globals, &names)?;
    let insert_at = secs.iter().position(|s| s.id == SECTION_EXPORT || AFTER_EXPORT.contains(&s.id)).unwrap_or(secs.len());
    let mut out = Vec::with_capacity(bytes.len() + exports.len() + 16);
    out.extend_from_slice(&bytes[..8]);
    for (i, s) in secs.iter().enumerate() {
        if i == insert_at {
            push_section(&mut out, SECTION_EXPORT, &exports);
        }
        if s.id != SECTION_EXPORT {
            push_section(&mut out, s.id, s.contents);
        }
    }
    if insert_at == secs.len() {
        push_section(&mut out, SECTION_EXPORT, &exports);
    }
    Ok(Prepared { bytes: out, globals: names })
}
