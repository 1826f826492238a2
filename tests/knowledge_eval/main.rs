//! MMLU, FreebaseQA and wikitext-parquet evaluation on data files built here, in the
//! formats published upstream, checked against computations from `Decoder::forward`.

mod bad_input;
#[path = "../common/mod.rs"]
mod common;
mod data;
mod freebaseqa;
mod mmlu;
mod reference;
mod wikitext;

use arborist::data::mmlu::read_mmlu;
use arborist::eval::freebaseqa::{first_line, is_correct};
use arborist::eval::mmlu::{evaluate_mmlu, MmluOptions, MmluPrompt};
use arborist::model::LoadedModel;
use candle_core::{DType, Device, Tensor, D};
use common::*;
use data::*;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::column::writer::ColumnWriter;
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use reference::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
