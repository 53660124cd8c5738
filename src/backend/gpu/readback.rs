//! Reading GPU buffers back to the host: map, wait, copy out, unmap.

use crate::error::{LabError, Result};

/// Maps the first `size` bytes of `buffer` (MAP_READ) and copies them into `out`.
pub fn map_read_into(
    device: &wgpu::Device,
    buffer: &wgpu::Buffer,
    size: u64,
    out: &mut Vec<u8>,
) -> Result<()> {
    let slice = buffer.slice(..size);
    let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = sender.send(r);
    });
    device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| LabError::Gpu(format!("waiting for a readback: {e}")))?;
    match pollster::block_on(receiver.receive()) {
        Some(Ok(())) => {}
        Some(Err(e)) => return Err(LabError::Gpu(format!("mapping a readback buffer: {e}"))),
        None => {
            return Err(LabError::Gpu(
                "mapping a readback buffer: the callback was dropped".into(),
            ))
        }
    }
    {
        let view = slice
            .get_mapped_range()
            .map_err(|e| LabError::Gpu(format!("reading a mapped buffer: {e}")))?;
        out.clear();
        out.extend_from_slice(&view);
    }
    buffer.unmap();
    Ok(())
}

/// Like [`map_read_into`], into a new vector.
pub fn map_read(device: &wgpu::Device, buffer: &wgpu::Buffer, size: u64) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(size as usize);
    map_read_into(device, buffer, size, &mut out)?;
    Ok(out)
}
