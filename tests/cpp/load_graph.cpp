// Load a frozen TensorFlow graph (kfreeze's optimized.pb) in the C++ OpenCV dnn a service links
// (Debian's libopencv-dev), run it on raw float32 inputs, write each output as raw float32.
//
// Built by tests/cpp/test_cpp_opencv.py:  g++ -O2 load_graph.cpp $(pkg-config --cflags --libs opencv4)
//
// Usage: load_graph GRAPH.pb OUT_DIR BATCH [-i NAME FILE SHAPE]... -o LAYER [-o LAYER]...
//   -i   an input: the placeholder NAME (only used when there are several inputs), a file of
//        raw little-endian float32 values, and its SHAPE as d0,d1,... (4-D inputs in NCHW, as
//        OpenCV's TF importer takes them; the caller transposes NHWC -> NCHW);
//   -o   an output layer: the name net.forward takes (kfreeze prints it; verify's metrics
//        record it under opencv_names);
//   BATCH 0 runs all rows at once; N runs N rows at a time (a graph with a fixed batch), the
//        rows of every input a multiple of N; the outputs are the chunks' results, concatenated.
// Writes OUT_DIR/K.f32 (raw float32) and OUT_DIR/K.shape (the dimensions, space-separated) for
// the K-th -o, counting from 0. On failure: exit status 2 (1 for a usage error), one line on stderr.
// LOAD_GRAPH_THREADS=N (environment) caps OpenCV's threads, and so the address space they reserve.

#include <opencv2/core.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/dnn.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Input {
    std::string name;
    std::vector<int> shape;
    std::vector<float> data;
};

std::vector<int> parse_shape(const std::string& text) {
    std::vector<int> dims;
    std::stringstream ss(text);
    std::string part;
    while (std::getline(ss, part, ',')) {
        char* end = nullptr;
        long d = std::strtol(part.c_str(), &end, 10);
        if (part.empty() || *end != '\0' || d < 1 || d > (1L << 30))
            throw std::invalid_argument("bad shape '" + text + "': give positive dimensions as d0,d1,...");
        dims.push_back(static_cast<int>(d));
    }
    if (dims.empty()) throw std::invalid_argument("bad shape '" + text + "'");
    return dims;
}

size_t count(const std::vector<int>& dims) {
    size_t n = 1;
    for (int d : dims) n *= static_cast<size_t>(d);
    return n;
}

std::vector<float> read_floats(const std::string& path, size_t n) {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    if (!f) throw std::runtime_error("cannot open input file " + path);
    std::streamoff size = f.tellg();
    if (size != static_cast<std::streamoff>(n * sizeof(float)))
        throw std::runtime_error(path + " holds " + std::to_string(size) + " bytes; its shape needs " +
                                 std::to_string(n * sizeof(float)));
    std::vector<float> data(n);
    f.seekg(0);
    f.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(n * sizeof(float)));
    if (!f) throw std::runtime_error("cannot read " + path);
    return data;
}

std::string one_line(const std::string& text) {
    std::string out;
    bool space = false;
    for (char c : text) {
        if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
            space = !out.empty();
        } else {
            if (space) out += ' ';
            out += c;
            space = false;
        }
    }
    return out.substr(0, 600);
}

int run(int argc, char** argv) {
    if (argc < 4) throw std::invalid_argument("usage: load_graph GRAPH.pb OUT_DIR BATCH [-i NAME FILE SHAPE]... -o LAYER...");
    const std::string graph = argv[1], out_dir = argv[2];
    const int batch = std::atoi(argv[3]);
    if (batch < 0) throw std::invalid_argument("BATCH must be 0 or positive");
    std::vector<Input> inputs;
    std::vector<cv::String> layers;
    for (int i = 4; i < argc; ++i) {
        const std::string flag = argv[i];
        if (flag == "-i" && i + 3 < argc) {
            Input in;
            in.name = argv[i + 1];
            in.shape = parse_shape(argv[i + 3]);
            in.data = read_floats(argv[i + 2], count(in.shape));
            inputs.push_back(std::move(in));
            i += 3;
        } else if (flag == "-o" && i + 1 < argc) {
            layers.push_back(argv[++i]);
        } else {
            throw std::invalid_argument("unexpected argument '" + flag + "'");
        }
    }
    if (inputs.empty() || layers.empty()) throw std::invalid_argument("give at least one -i and one -o");
    const int rows = inputs[0].shape[0];
    for (const Input& in : inputs)
        if (in.shape[0] != rows) throw std::invalid_argument("inputs have different numbers of rows");
    const int step = batch == 0 ? rows : batch;
    if (rows % step != 0) throw std::invalid_argument("rows are not a multiple of BATCH");

    cv::dnn::Net net = cv::dnn::readNetFromTensorflow(graph);
    if (net.empty()) throw std::runtime_error("readNetFromTensorflow gave an empty network");
    for (const cv::String& layer : layers)
        if (net.getLayerId(layer) < 0) throw std::runtime_error("OpenCV's network has no layer named '" + layer + "'");

    std::vector<std::vector<float>> values(layers.size());
    std::vector<std::vector<int>> shapes(layers.size());
    for (int start = 0; start < rows; start += step) {
        for (Input& in : inputs) {
            std::vector<int> dims = in.shape;
            dims[0] = step;
            const size_t per_row = count(in.shape) / static_cast<size_t>(rows);
            cv::Mat blob(static_cast<int>(dims.size()), dims.data(), CV_32F, in.data.data() + start * per_row);
            net.setInput(blob, inputs.size() > 1 ? cv::String(in.name) : cv::String());
        }
        std::vector<cv::Mat> results;
        net.forward(results, layers);
        if (results.size() != layers.size()) throw std::runtime_error("net.forward returned a different number of outputs");
        for (size_t k = 0; k < results.size(); ++k) {
            cv::Mat y = results[k].isContinuous() ? results[k] : results[k].clone();
            if (y.depth() != CV_32F) y.convertTo(y, CV_32F);
            std::vector<int> dims(y.size.p, y.size.p + y.dims);
            if (start == 0) {
                shapes[k] = dims;
            } else {
                std::vector<int> a(dims.begin() + 1, dims.end()), b(shapes[k].begin() + 1, shapes[k].end());
                if (a != b) throw std::runtime_error("output '" + layers[k] + "' changed shape between batches");
                shapes[k][0] += dims[0];
            }
            const float* p = y.ptr<float>();
            values[k].insert(values[k].end(), p, p + y.total());
        }
    }
    for (size_t k = 0; k < layers.size(); ++k) {
        const std::string base = out_dir + "/" + std::to_string(k);
        std::ofstream data(base + ".f32", std::ios::binary);
        data.write(reinterpret_cast<const char*>(values[k].data()),
                   static_cast<std::streamsize>(values[k].size() * sizeof(float)));
        std::ofstream shape(base + ".shape");
        for (size_t d = 0; d < shapes[k].size(); ++d) shape << (d ? " " : "") << shapes[k][d];
        shape << "\n";
        if (!data || !shape) throw std::runtime_error("cannot write " + base + ".f32");
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    // Only the one line below on stderr: no OpenCV warnings.
    cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT);
    if (const char* threads = std::getenv("LOAD_GRAPH_THREADS")) cv::setNumThreads(std::atoi(threads));
    try {
        return run(argc, argv);
    } catch (const std::invalid_argument& e) {
        std::cerr << "load_graph: " << one_line(e.what()) << std::endl;
        return 1;
    } catch (const std::bad_alloc&) {
        std::cerr << "load_graph: out of memory (std::bad_alloc)" << std::endl;
        return 2;
    } catch (const std::exception& e) {  // cv::Exception too
        std::cerr << "load_graph: " << one_line(e.what()) << std::endl;
        return 2;
    }
}
