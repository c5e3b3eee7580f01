// A C++ program built against an installed luaengine with nothing but
//   c++ -std=c++17 consumer_hpp.cpp $(pkg-config --cflags --libs luaengine)
// (tests/c/check_install.cmake does it). Prints "hello from /consumer".
#include <luaengine.hpp>

#include <iostream>

int main() {
  try {
    luaengine::Engine engine;
    luaengine::Script content = engine.compile("content", "ngx.say('hello from ', ngx.var.uri)");
    luaengine::RequestInit init;
    init.path = "/consumer";
    luaengine::Request request = engine.request(init);
    if (request.run(LE_PHASE_CONTENT, content) != luaengine::Status::Done) return 1;
    std::cout << request.response().body;
    return 0;
  } catch (const luaengine::Error &e) {
    std::cerr << "consumer: " << e.what() << "\n";
    return 1;
  }
}
